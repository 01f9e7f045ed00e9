"""The commands that run part of the suite select what they say they do: `pytest --collect-only`
with each filter, read through dev/collection_report.py (each selected test's id, marks and
fixtures), compared with the whole suite. A server a test reaches only while it runs would
escape every filter here, as it escapes the markers: hence the check that no fixture looks
another up at run time but `db`, whose engine fixture is among the test's own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The commands of README.md, "Running the tests" (`bash dev/test.sh ...`, whose arguments go to
# pytest), as (environment, pytest arguments); "everything" is what the others are compared to.
DOCUMENTED = {
    "everything": ({}, []),  # bash dev/test.sh
    "one major": ({"PG_MAJORS": "16"}, []),  # PG_MAJORS=16 bash dev/test.sh
    "some majors": ({"PG_MAJORS": "14,18"}, []),  # PG_MAJORS=14,18 bash dev/test.sh
    "mariadb": ({}, ["-m", "mariadb"]),
    "postgres": ({}, ["-m", "postgres and not mariadb"]),
    "no server": ({}, ["-m", "not postgres and not mariadb"]),
    "one file": ({}, ["tests/test_event.py"]),
    "by name": ({}, ["-k", "rotation"]),
}

# The fixtures that start or need a server: tests/conftest.py's and those modules override.
SERVER_FIXTURES = {"pg_server", "mariadb_server", "rds", "maria", "db"}


def collect(environment: dict[str, str], arguments: list[str], report: Path) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "PG_MAJORS"}
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "-p", "dev.collection_report", *arguments],
        cwd=ROOT,
        env={**env, **environment, "COLLECTION_REPORT": str(report)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def selected(tmp_path_factory) -> dict[str, list[dict]]:
    """What each documented command selects (collected two at a time)."""
    directory = tmp_path_factory.mktemp("collections")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {
            name: pool.submit(collect, environment, arguments, directory / f"{i}.json")
            for i, (name, (environment, arguments)) in enumerate(DOCUMENTED.items())
        }
        return {name: run.result() for name, run in runs.items()}


def ids(tests: list[dict], keep=lambda test: True) -> set[str]:
    return {test["id"] for test in tests if keep(test)}


def uses(*fixtures: str):
    return lambda test: any(fixture in test["fixtures"] for fixture in fixtures)


def marked(mark: str):
    return lambda test: mark in test["marks"]


def on_a_server(test: dict) -> bool:
    """By its fixtures or by its marks (a test that starts servers of its own is marked)."""
    return uses(*SERVER_FIXTURES)(test) or bool({"postgres", "mariadb"} & set(test["marks"]))


def servers(test: dict) -> set[str]:
    """The servers the test's id names in its parameters: pg14..pg18, mariadb."""
    parameters = re.search(r"\[(.*)\]$", test["id"])
    return set(re.findall(r"\b(pg\d+|mariadb)\b", parameters[1])) if parameters else set()


def majors(tests: list[dict]) -> set[int]:
    """The PostgreSQL majors the tests' ids name."""
    return {int(s[2:]) for test in tests for s in servers(test) if s.startswith("pg")}


def test_every_test_on_a_server_is_marked_for_it(selected):
    everything = selected["everything"]
    assert everything
    for test in everything:
        if "pg_server" in test["fixtures"]:
            assert "postgres" in test["marks"], test
        if "mariadb_server" in test["fixtures"]:
            assert "mariadb" in test["marks"], test
        if uses(*SERVER_FIXTURES)(test):
            assert uses("pg_server", "mariadb_server")(test), test
    assert majors(everything) == {14, 15, 16, 17, 18}


def test_no_fixture_reaches_a_server_only_at_run_time():
    """`request.getfixturevalue` hides what it looks up from the fixtures pytest knows before a
    test runs, so from the markers and the filters: only `db` may use it."""
    for path in sorted((ROOT / "tests").glob("*.py")):
        calls = len(re.findall(r"request\.getfixturevalue\(", path.read_text()))
        assert calls == (1 if path.name == "conftest.py" else 0), path.name


def test_pg_majors_chooses_the_postgresql_servers(selected):
    not_on_postgresql = lambda t: not marked("postgres")(t)  # noqa: E731
    everything = ids(selected["everything"], not_on_postgresql)
    for name, wanted in (("one major", {16}), ("some majors", {14, 18})):
        tests = selected[name]
        assert majors(tests) == wanted, name
        assert ids(tests, not_on_postgresql) == everything, name


def test_the_mariadb_filter_selects_every_test_on_mariadb_and_only_those(selected):
    tests = selected["mariadb"]
    assert ids(tests) == ids(selected["everything"], marked("mariadb"))
    assert all(servers(test) == {"mariadb"} for test in tests if uses("mariadb_server")(test))


def test_the_postgres_filter_selects_every_test_on_postgresql_alone(selected):
    on_postgresql = lambda t: marked("postgres")(t) and not marked("mariadb")(t)  # noqa: E731
    tests = selected["postgres"]
    assert ids(tests) == ids(selected["everything"], on_postgresql)
    assert majors(tests) == {14, 15, 16, 17, 18}


def test_the_no_server_filter_selects_every_test_without_a_server(selected):
    tests = selected["no server"]
    assert ids(tests) == ids(selected["everything"], lambda t: not on_a_server(t))
    assert not majors(tests)


def test_a_file_selects_its_tests(selected):
    tests = selected["one file"]
    in_file = ids(selected["everything"], lambda t: t["id"].startswith("tests/test_event.py::"))
    assert in_file and ids(tests) == in_file


def test_a_name_selects_the_tests_that_hold_it(selected):
    tests = selected["by name"]
    named = ids(selected["everything"], lambda t: "rotation" in t["id"].split("::")[-1])
    assert named and named <= ids(tests)
    assert all("rotation" in test["id"].lower() for test in tests)  # -k ignores case
