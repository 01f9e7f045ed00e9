#!/usr/bin/env bash
# Set everything up, then run the seed example against a throwaway PostgreSQL and a
# local Secrets Manager emulator. See dev/demo.py for what it shows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh
exec .venv/bin/python dev/demo.py "$@"
