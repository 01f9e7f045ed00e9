"""build.sh: one lean zip per architecture and Python, at most 6 MB, without PyMySQL's rsa extra
(cryptography, cffi, pycparser) and without boto3; its handler imports on every Python of the
Lambda runtimes this machine has, as Lambda would import it: the zip's root first, then only
what the runtime ships (boto3 and its dependencies, taken from this project's .venv).

Wheels are cached in .cache/wheels and the large libraries' zopfli streams in .cache/deflate:
the first run takes a few minutes, later builds a few seconds each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

from tests.lambda_runtime import BASH, PYTHONS, build_zip, lambda_pythons, link_runtime
from tests.tls import make_ca

MAX_BYTES = 6_000_000
ARCHES = ("x86_64", "arm64")
PYTHONS_HERE = lambda_pythons()


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """build(arch, python, *options) -> the zip, built once per set of arguments."""
    built: dict[tuple, Path] = {}
    out = tmp_path_factory.mktemp("dist")

    def run(arch: str, python: str, *options: str) -> Path:
        key = (arch, python, *options)
        if key not in built:
            target = out / f"rds-initializer-{arch}-{python}-{len(built)}.zip"
            built[key] = build_zip(target, arch, python, *options)
        return built[key]

    return run


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory) -> Path:
    return link_runtime(tmp_path_factory.mktemp("lambda-runtime") / "runtime")


def names(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return set(archive.namelist())


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_one_lean_zip_per_architecture(build, arch, python):
    zip_path = build(arch, python)
    content = names(zip_path)
    tops = {name.split("/")[0] for name in content}

    assert zip_path.stat().st_size <= MAX_BYTES
    assert "lambda_function.py" in content and {"pymysql", "psycopg2"} <= tops
    assert not {"cryptography", "cffi", "pycparser", "_cffi_backend"} & {
        top.split(".")[0] for top in tops
    }
    assert not {"boto3", "botocore", "s3transfer"} & tops
    assert "rds-ca-bundle.pem" not in content
    assert "amazon-root-cas.pem" in content  # RDS Proxy's roots, trusted beside the bundle
    machine = "x86_64" if arch == "x86_64" else "aarch64"
    abi = f"cpython-{python.replace('.', '')}-{machine}-linux-gnu"
    assert any(name.startswith("psycopg2/_psycopg.") and abi in name for name in content)


def test_the_default_output_is_named_by_architecture():
    """Two architectures never build to the same file."""
    script = (ROOT / "build.sh").read_text()
    assert "zip_path=${zip_path:-dist/rds-initializer-$arch.zip}" in script


def test_this_machine_has_a_lambda_python_to_import_with():
    assert PYTHONS_HERE, f"no Python {' or '.join(PYTHONS)} here (pyenv or PATH)"


@pytest.mark.parametrize("python", sorted(PYTHONS_HERE))
def test_the_handler_imports_from_the_zip(build, runtime_dir, tmp_path, python):
    """Imported like Lambda does: the zip's root, then the runtime's packages; -S keeps the
    interpreter's own site-packages out, so nothing else can stand in for the zip's."""
    machine = os.uname().machine
    arch = "arm64" if machine == "aarch64" else "x86_64"
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(build(arch, python)) as archive:
        archive.extractall(unpacked)
    script = f"""
import json, sys, time
sys.path[:0] = [{str(unpacked)!r}, {str(runtime_dir)!r}]
started = time.perf_counter()
import lambda_function
elapsed = time.perf_counter() - started
import psycopg2, pymysql
try:
    import cryptography
    rsa = True
except ImportError:
    rsa = False
print(json.dumps({{
    "python": sys.version.split()[0],
    "handler": callable(lambda_function.lambda_handler),
    "psycopg2": psycopg2.__file__,
    "pymysql": pymysql.__file__,
    "cryptography": rsa,
    "ssl_mode": lambda_function.default_ssl_mode(),
    "import_ms": round(elapsed * 1000),
}}))
"""
    done = subprocess.run(
        [PYTHONS_HERE[python], "-S", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    print(report)
    assert report["python"].startswith(python + ".")
    assert report["handler"] is True and report["cryptography"] is False
    assert report["psycopg2"].startswith(str(unpacked))
    assert report["pymysql"].startswith(str(unpacked))
    assert report["ssl_mode"] == "require"  # no CA bundle in this zip


def test_a_ca_bundle_goes_into_the_zip_and_makes_verify_full_the_default(
    build, runtime_dir, tmp_path
):
    ca = make_ca(tmp_path / "ca", "bundle-ca")
    python = sorted(PYTHONS_HERE)[-1]
    zip_path = build("x86_64", python, "--ca-bundle", str(ca))
    assert zip_path.stat().st_size <= MAX_BYTES
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.read("rds-ca-bundle.pem") == ca.read_bytes()
        archive.extractall(tmp_path / "task")
    script = (
        f"import sys; sys.path[:0] = [{str(tmp_path / 'task')!r}, {str(runtime_dir)!r}]\n"
        "import lambda_function as f\n"
        "print(f.default_ssl_mode(), f.ca_bundle())\n"
    )
    done = subprocess.run(
        [PYTHONS_HERE[python], "-S", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"]},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["verify-full", str(tmp_path / "task" / "rds-ca-bundle.pem")]


@pytest.mark.parametrize(
    "arguments",
    [
        ["--dryrun"],
        ["--arch", "arm"],
        ["--python", "3.11"],
        ["--ca-bundle", "/nonexistent.pem"],
        ["--max-bytes", "six"],
    ],
)
def test_build_refuses_bad_arguments_before_building(arguments, tmp_path):
    target = tmp_path / "out.zip"
    done = subprocess.run(
        [BASH, str(ROOT / "build.sh"), "--output", str(target), *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and not target.exists()
    assert done.stderr.strip()


def test_a_zip_over_the_limit_fails_the_build(build, tmp_path):
    target = tmp_path / "big.zip"
    done = subprocess.run(
        [BASH, str(ROOT / "build.sh"), "--output", str(target), "--max-bytes", "1000000"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 1 and "over the limit of 1000000" in done.stderr


def global_sized_bundle(directory: Path) -> Path:
    """A CA bundle as large as AWS's global RDS bundle (about 160 KB of PEM certificates),
    made of the system's CA certificates."""
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    assert system.exists(), f"{system} is missing (Debian: apt-get install ca-certificates)"
    end = "-----END CERTIFICATE-----\n"
    certificates = [c + end for c in system.read_text().split(end) if "BEGIN CERTIFICATE" in c]
    bundle, text = directory / "global-sized-bundle.pem", ""
    for certificate in certificates:
        if len(text) >= 163_000:
            break
        text += certificate.strip() + "\n"
    assert len(text) >= 163_000
    bundle.write_text(text)
    return bundle


@pytest.mark.parametrize("arch", ARCHES)
def test_a_global_sized_ca_bundle_still_fits(build, arch, tmp_path):
    zip_path = build(arch, "3.13", "--ca-bundle", str(global_sized_bundle(tmp_path)))

    assert zip_path.stat().st_size <= MAX_BYTES
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.testzip() is None  # every entry decompresses to its CRC


def test_builds_are_reproducible(build, tmp_path):
    again = build_zip(tmp_path / "again.zip", "x86_64", "3.12")
    assert again.read_bytes() == build("x86_64", "3.12").read_bytes()
