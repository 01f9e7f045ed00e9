#!/usr/bin/env bash
# Full check: setup, lint, format check, tests. Extra args go to pytest, e.g.
#   bash dev/test.sh -m mariadb            only the tests on MariaDB
#   PG_MAJORS=16 bash dev/test.sh          PostgreSQL 16 only (and setup fetches only 16)
#   bash dev/test.sh tests/test_event.py   one file
# Without arguments (CI) setup installs everything. With arguments it installs the packages,
# asks pytest which tests they select (dev/needs.py), and fetches only what those need: no
# PostgreSQL, MariaDB or checkov for tests that use none.
set -euo pipefail
cd "$(dirname "$0")/.."

setup_began=$EPOCHREALTIME
if [ $# -eq 0 ]; then
    # Fetch only the PostgreSQL majors the tests will run on.
    SETUP_PG_MAJORS=${SETUP_PG_MAJORS:-${PG_MAJORS:-all}} bash dev/setup.sh
else
    nothing=(--pg none --no-mariadb --no-checkov)
    bash dev/setup.sh "${nothing[@]}"
    read -ra needs <<<"$(.venv/bin/python dev/needs.py "$@")"
    echo "test: setup for the selected tests: ${needs[*]:-everything}"
    if [ "${needs[*]:-}" != "${nothing[*]}" ]; then
        SETUP_PG_MAJORS=${SETUP_PG_MAJORS:-${PG_MAJORS:-all}} bash dev/setup.sh ${needs[@]+"${needs[@]}"}
    fi
fi
echo "test: setup took $(awk -v a="$setup_began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }')"

echo "test: ruff check"
.venv/bin/ruff check .

echo "test: ruff format --check"
.venv/bin/ruff format --check .

echo "test: mypy (the Dialect Protocol, checked against both engines)"
.venv/bin/mypy

if [ $# -eq 0 ]; then
    echo "test: pytest on PostgreSQL ${PG_MAJORS:-14,15,16,17,18} and MariaDB" \
        "(a line shows each server as it starts; -v lists every test)"
else
    echo "test: pytest $*"
fi
# exec keeps pytest's exit code (5 = no tests collected is a failure too).
exec .venv/bin/python -m pytest "$@"
