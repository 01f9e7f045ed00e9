#!/usr/bin/env bash
# Invoke the deployed RDS Initializer with event files, print a readable result per event and,
# for several, one summary table. The logic is in deploy/invoke.py, next to this script.
#   deploy/invoke.sh [--dry-run] [-j N] [--output-dir DIR] [--secrets-writes-per-second W]
#       [--secrets-reads-per-second R] FUNCTION_NAME EVENT.json|DIR ...
# Exit 0: every invocation succeeded; 1: one failed or its outcome is unknown; 2: a usage
# error, or no AWS region or credentials (then nothing is invoked). --help says more.
# Needs the AWS CLI (v1 or v2) and python3.
set -euo pipefail
command -v python3 >/dev/null 2>&1 || { echo "deploy/invoke.sh needs python3" >&2; exit 2; }
# Resolved here, from the caller's PATH: a python3 shim (pyenv) may put another aws first.
INVOKE_AWS_CLI=${INVOKE_AWS_CLI:-$(command -v aws || true)}
export INVOKE_AWS_CLI
exec python3 "$(dirname "$0")/invoke.py" "$@"
