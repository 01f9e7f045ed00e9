"""What the tests that pytest's arguments select need from dev/setup.sh, printed as its options:
`python dev/needs.py tests/test_event.py` prints `--pg none --no-mariadb --no-checkov`.

pytest collects with the arguments (`--collect-only`, nothing runs) and dev/collection_report.py
says what each selected test is marked and uses:
- PostgreSQL majors: those in the ids of the tests marked postgres (pg14..pg18, which
  PG_MAJORS chooses); a test marked postgres whose id names no major needs PG_MAJORS, or
  every major;
- MariaDB: a test marked mariadb;
- checkov: a test of tests/test_terraform.py.
When the collection fails, everything is set up, so that the run itself shows the error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING: list[str] = []  # setup.sh's defaults: every major (or PG_MAJORS), MariaDB, checkov


def selected(arguments: list[str]) -> list[dict] | None:
    """Each selected test's id, marks and fixtures; None when pytest could not collect."""
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "selected.json"
        done = subprocess.run(  # noqa: S603 - this interpreter's pytest, the user's arguments
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
            + ["-p", "dev.collection_report", *arguments],
            cwd=ROOT,
            env={**os.environ, "COLLECTION_REPORT": str(report)},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in (0, 5) or not report.exists():  # 5: no test selected
            return None
        return json.loads(report.read_text())


def majors_in_id(test: dict) -> set[int]:
    """The PostgreSQL majors the test's parameters name (pg14..pg18)."""
    parameters = re.search(r"\[(.*)\]$", test["id"])
    return {int(m) for m in re.findall(r"\bpg(\d+)\b", parameters[1])} if parameters else set()


def setup_options(tests: list[dict], pg_majors: str) -> list[str]:
    on_postgres = [test for test in tests if "postgres" in test["marks"]]
    if any(not majors_in_id(test) for test in on_postgres):
        pg = pg_majors or "all"
    else:
        pg = ",".join(str(m) for m in sorted(set().union(*map(majors_in_id, on_postgres))))
        pg = pg or "none"
    options = ["--pg", pg]
    if not any("mariadb" in test["marks"] for test in tests):
        options.append("--no-mariadb")
    if not any(test["id"].startswith("tests/test_terraform.py::") for test in tests):
        options.append("--no-checkov")
    return options


def main(arguments: list[str]) -> int:
    tests = selected(arguments)
    if tests is None:
        print(
            "test: pytest cannot collect with these arguments: setting up everything",
            file=sys.stderr,
        )
        options = EVERYTHING
    else:
        options = setup_options(tests, os.environ.get("PG_MAJORS", ""))
    print(" ".join(options))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
