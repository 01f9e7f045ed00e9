"""The operator's entry points answer --help, and refuse a wrong option, at once, before any
setup; dev/test.sh sets up only what the tests it is asked to run need (dev/needs.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from dev.needs import setup_options

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


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["dev/demo.sh", "--engine", "postgress"], "invalid choice: 'postgress'"),
        (["dev/demo.sh", "--pg-major", "13"], "invalid choice: 13"),
        (["dev/demo.sh", "--engine", "mariadb", "--pg-major", "16"], "only to --engine postgres"),
        (["dev/demo.sh", "--verbose"], "unrecognized arguments: --verbose"),
        (["dev/stack.sh", "up", "--pg", "19"], "invalid choice: 19"),
        (["dev/stack.sh", "start"], "invalid choice: 'start'"),
    ],
)
def test_a_wrong_option_is_refused_before_any_setup(command, says):
    began = time.monotonic()
    result = subprocess.run(
        ["bash", *command],  # noqa: S607 - bash from PATH, as the README runs it
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - began
    assert result.returncode == 2
    assert says in result.stderr
    assert "setup:" not in result.stdout + result.stderr
    assert took < 5, f"{command} took {took:.1f} s"


def collected(test_id: str, *marks: str) -> dict:
    return {"id": test_id, "marks": list(marks), "fixtures": []}


EVENT = collected("tests/test_event.py::test_x")
ON_PG = [collected(f"tests/test_apply.py::test_x[pg{m}]", "postgres") for m in (14, 18)]
ON_MARIADB = collected("tests/test_apply.py::test_x[mariadb]", "mariadb")
STACK = collected("tests/test_stack.py::test_x[pg16-mariadb]", "postgres", "mariadb")
TERRAFORM = collected("tests/test_terraform.py::test_x")
UNNAMED_PG = collected("tests/test_y.py::test_x", "postgres")


@pytest.mark.parametrize(
    ("tests", "pg_majors", "options"),
    [
        ([EVENT], "", "--pg none --no-mariadb --no-checkov"),
        ([], "", "--pg none --no-mariadb --no-checkov"),
        ([EVENT, *ON_PG], "", "--pg 14,18 --no-mariadb --no-checkov"),
        ([EVENT, ON_MARIADB], "", "--pg none --no-checkov"),
        ([STACK], "", "--pg 16 --no-checkov"),
        ([TERRAFORM], "", "--pg none --no-mariadb"),
        ([UNNAMED_PG, ON_PG[0]], "", "--pg all --no-mariadb --no-checkov"),
        ([UNNAMED_PG], "15,17", "--pg 15,17 --no-mariadb --no-checkov"),
    ],
)
def test_setup_fetches_what_the_selected_tests_need(tests, pg_majors, options):
    assert " ".join(setup_options(tests, pg_majors)) == options


def test_the_selection_is_read_from_pytest_itself():
    """dev/test.sh's question, asked of pytest: what tests/test_event.py needs (nothing)."""
    command = [sys.executable, "dev/needs.py", "tests/test_event.py"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "--pg none --no-mariadb --no-checkov\n")
