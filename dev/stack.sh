#!/usr/bin/env bash
# A local stack to try the lambda-invocation/ examples by hand (see dev/stack.py):
#   bash dev/stack.sh up [--pg N] [--mariadb]    start PostgreSQL N (default 16) [and MariaDB]
#                                                with moto as Secrets Manager; prints the env
#   bash dev/stack.sh run EVENT [--dry-run]      run deploy/lambda_function.py on EVENT against it
#   bash dev/stack.sh env [--mariadb]            print the environment to export
#   bash dev/stack.sh status | down
set -euo pipefail
cd "$(dirname "$0")/.."

# The options first, before any setup: dev/options.py is dev/stack.py's own parser, on the
# machine's python3. It prints "ok", or the help that was asked for; a wrong option exits 2.
checked=$(python3 dev/options.py stack "$@")
if [ "$checked" != ok ]; then
    echo "$checked"
    exit 0
fi

if [ "$1" = up ]; then
    # Set up only what this stack runs: one PostgreSQL major, MariaDB if asked.
    pg=16
    mariadb=--no-mariadb
    prev=
    for arg in "$@"; do
        case "$arg" in
        --pg=*) pg=${arg#--pg=} ;;
        --mariadb) mariadb= ;;
        esac
        [ "$prev" = --pg ] && pg=$arg
        prev=$arg
    done
    bash dev/setup.sh --packages local --pg "$pg" $mariadb
elif [ ! -x .venv/bin/python ]; then
    echo "stack: no .venv yet: run bash dev/stack.sh up first" >&2
    exit 2
fi
exec .venv/bin/python dev/stack.py "$@"
