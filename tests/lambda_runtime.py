"""Running the built zip as the Lambda Python runtime would: the Pythons of the Lambda runtimes
this machine has, boto3 and its dependencies (what the runtime ships besides the zip), and
build.sh itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash") or "/bin/bash"
PYTHONS = ("3.12", "3.13")  # the Lambda runtimes on Amazon Linux 2023 that build.sh targets
# What the Lambda Python runtime provides besides the standard library: boto3 and what it needs.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def lambda_pythons() -> dict[str, str]:
    """The interpreters here of each Lambda runtime's Python: pyenv's, else python3.X on PATH."""
    found = {}
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for version in PYTHONS:
        candidates = sorted((pyenv_root / "versions").glob(f"{version}.*/bin/python3"))
        on_path = shutil.which(f"python{version}")
        if candidates:
            found[version] = str(candidates[-1])
        elif on_path:
            found[version] = on_path
    return found


def link_runtime(directory: Path) -> Path:
    """boto3 and its dependencies only (pure Python), linked from this venv's site-packages."""
    site = Path(sysconfig.get_paths()["purelib"])
    directory.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_PACKAGES:
        source = site / name if (site / name).exists() else site / f"{name}.py"
        assert source.exists(), f"{name} is missing from {site}"
        (directory / source.name).symlink_to(source)
    return directory


def build_zip(target: Path, arch: str, python: str, *options: str) -> Path:
    """Run build.sh; fail with its output when it fails."""
    done = subprocess.run(  # noqa: S603 - build.sh with fixed options
        [BASH, str(ROOT / "build.sh"), "--arch", arch, "--python", python]
        + ["--output", str(target), *options],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target
