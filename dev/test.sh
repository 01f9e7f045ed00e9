#!/usr/bin/env bash
# Full check: setup, lint, format check, tests. Extra args go to pytest, e.g.
#   bash dev/test.sh -m mariadb            only the tests on MariaDB
#   PG_MAJORS=16 bash dev/test.sh          PostgreSQL 16 only (and setup fetches only 16)
#   bash dev/test.sh tests/test_event.py   one file
set -euo pipefail
cd "$(dirname "$0")/.."

# Fetch only the PostgreSQL majors the tests will run on.
SETUP_PG_MAJORS=${SETUP_PG_MAJORS:-${PG_MAJORS:-all}} bash dev/setup.sh

echo "test: ruff check"
.venv/bin/ruff check .

echo "test: ruff format --check"
.venv/bin/ruff format --check .

echo "test: mypy (the Dialect Protocol, checked against both engines)"
.venv/bin/mypy

echo "test: pytest on PostgreSQL ${PG_MAJORS:-14,15,16,17,18} and MariaDB" \
    "(a line shows each server as it starts; -v lists every test)"
# exec keeps pytest's exit code (5 = no tests collected is a failure too).
exec .venv/bin/python -m pytest "$@"
