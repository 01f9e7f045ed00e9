#!/usr/bin/env bash
# Set up only what the chosen demo needs, then run the seed example against a throwaway
# database and a local Secrets Manager emulator. See dev/demo.py for what it shows.
#   bash dev/demo.sh                   PostgreSQL 16
#   bash dev/demo.sh --pg-major 14     another PostgreSQL major (14 to 18)
#   bash dev/demo.sh --engine mariadb  MariaDB (installs Debian's mariadb-server if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

# Read the options here, before any setup, so that --help answers at once, a wrong option is
# refused at once (dev/options.py, dev/demo.py's own parser, on the machine's python3), and setup
# fetches only the one PostgreSQL major, or MariaDB, that the demo will run.
engine=postgres
pg_major=16
args=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
    -h | --help)
        sed -n '2,6s/^# \{0,1\}//p' "$0"
        echo
        echo "options: --engine {postgres,mariadb}  --pg-major {14..18} (default 16)"
        echo "The first run creates .venv (about 30 s of downloads) and fetches what the engine"
        echo "needs; later runs take a few seconds."
        exit 0
        ;;
    --engine) engine=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
    --engine=*) engine=${1#--engine=}; shift ;;
    --pg-major) pg_major=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
    --pg-major=*) pg_major=${1#--pg-major=}; shift ;;
    *) shift ;; # dev/options.py reports unknown options
    esac
done
python3 dev/options.py demo ${args[@]+"${args[@]}"} >/dev/null
case "$engine" in
mariadb) setup=(--packages local --pg none) ;;
*) setup=(--packages local --pg "$pg_major" --no-mariadb) ;;
esac

bash dev/setup.sh "${setup[@]}"
echo "demo: starting dev/demo.py"
exec .venv/bin/python dev/demo.py ${args[@]+"${args[@]}"}
