"""Test certificates made with the openssl command line: a CA, and server certificates it
signs for given host names, as an RDS instance's certificate is signed by the RDS CA."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dev.servers import TlsFiles


def _openssl(*args: str, cwd: Path) -> None:
    # S603/S607: fixed arguments, the openssl of the machine.
    done = subprocess.run(  # noqa: S603
        ["openssl", *args],  # noqa: S607
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA certificate (its key next to it); returns the certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem"


def make_server_cert(ca: Path, directory: Path, name: str, hosts: list[str]) -> TlsFiles:
    """A server certificate signed by `ca` for the DNS names `hosts` (subjectAltName)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.ext").write_text(
        f"subjectAltName = {', '.join(f'DNS:{host}' for host in hosts)}\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid, issuer\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN={hosts[0]}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca),
        "-CAkey", str(ca.with_suffix(".key")), "-CAcreateserial", "-days", "2",
        "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip
    return TlsFiles(cert=directory / f"{name}.pem", key=directory / f"{name}.key")
