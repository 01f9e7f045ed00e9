"""The operator's entry points answer --help at once, before any setup."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("dev/demo.sh", "--engine {postgres,mariadb}"),
        ("dev/setup.sh", "--pg LIST"),
        ("dev/stack.sh", "up [--pg N] [--mariadb]"),
    ],
)
def test_help_answers_at_once(script, says):
    began = time.monotonic()
    command = ["bash", script, "--help"]  # noqa: S607 - bash from PATH, as the README runs it
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    took = time.monotonic() - began
    assert (result.returncode, result.stderr) == (0, "")
    assert says in result.stdout
    assert not result.stdout.startswith("setup:")
    assert took < 5, f"{script} --help took {took:.1f} s"
