"""build.sh: one lean zip per architecture and Python that holds the handler, psycopg2 with the
libraries its wheel bundles, PyMySQL (without its rsa extra: cryptography, cffi, pycparser)
and their licenses, nothing else (no boto3, no wheel metadata); its handler imports on every
Python of the Lambda runtimes this machine has, as Lambda would import it: the zip's root
first, then only what the runtime ships (boto3 and its dependencies, from this project's .venv).

Wheels are cached in .cache/wheels: the first run downloads them, later builds take a few
seconds each."""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

from tests.lambda_runtime import BASH, PYTHONS, build_zip, lambda_pythons, link_runtime
from tests.tls import make_ca

# What the zip holds at its root, and nothing else (plus rds-ca-bundle.pem when asked).
# amazon-root-cas.pem: the roots of RDS Proxy's certificates, trusted beside the RDS CA bundle
ROOT_ENTRIES = {
    "lambda_function.py",
    "amazon-root-cas.pem",
    "psycopg2",
    "psycopg2_binary.libs",
    "pymysql",
    "licenses",
}

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

    assert {name.split("/")[0] for name in content} == ROOT_ENTRIES
    licenses = sorted(name for name in content if name.startswith("licenses/"))
    assert [re.sub(r"-[0-9.]+/", "-N/", name) for name in licenses] == [
        "licenses/psycopg2_binary-N/LICENSE",
        "licenses/pymysql-N/LICENSE",
    ]
    assert not [name for name in content if "__pycache__" in name or ".dist-info" in name]
    with zipfile.ZipFile(zip_path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
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
    "ssl_mode": lambda_function.Settings.read(dict()).ssl_mode,
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
    assert {name.split("/")[0] for name in names(zip_path)} == ROOT_ENTRIES | {"rds-ca-bundle.pem"}
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.read("rds-ca-bundle.pem") == ca.read_bytes()
        archive.extractall(tmp_path / "task")
    script = (
        f"import sys; sys.path[:0] = [{str(tmp_path / 'task')!r}, {str(runtime_dir)!r}]\n"
        "import lambda_function as f\n"
        "settings = f.Settings.read({})\n"
        "print(settings.ssl_mode, settings.ca_bundle)\n"
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
        ["--max-bytes", "6000000"],  # the size limit is gone, and with it its option
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


def test_builds_are_reproducible(build, tmp_path):
    again = build_zip(tmp_path / "again.zip", "x86_64", "3.12")
    assert again.read_bytes() == build("x86_64", "3.12").read_bytes()
