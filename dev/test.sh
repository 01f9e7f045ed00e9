#!/usr/bin/env bash
# Full check: setup, lint, format check, tests. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash dev/setup.sh

echo "test: ruff check"
.venv/bin/ruff check .

echo "test: ruff format --check"
.venv/bin/ruff format --check .

echo "test: mypy (the Dialect Protocol, checked against both engines)"
.venv/bin/mypy

echo "test: pytest"
# exec keeps pytest's exit code (5 = no tests collected is a failure too).
exec .venv/bin/python -m pytest "$@"
