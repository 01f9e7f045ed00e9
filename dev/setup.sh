#!/usr/bin/env bash
# Idempotent dev/CI setup: .venv with requirements-dev.txt, plus PostgreSQL 14-18 binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi

echo "setup: installing requirements-dev.txt into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

echo "setup: fetching PostgreSQL binaries into .cache/postgresql (cached after first run)"
.venv/bin/python -c '
from tests.servers import PG_VERSIONS, pg_bindir
for major, version in PG_VERSIONS.items():
    print(f"setup:   PostgreSQL {version}: {pg_bindir(major)}")
'
