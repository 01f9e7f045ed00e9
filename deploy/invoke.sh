#!/usr/bin/env bash
# Invoke the deployed RDS Initializer with an event file, print its report, and fail when the
# function failed: `aws lambda invoke` itself exits 0 then, with FunctionError set.
#   deploy/invoke.sh FUNCTION_NAME EVENT.json [--dry-run]
# Needs the AWS CLI (v1 or v2) and python3.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 FUNCTION_NAME EVENT.json [--dry-run]" >&2; exit 2; }
function_name=$1
event=$2
mode=${3:-}
payload=$(mktemp)
response=$(mktemp)
trap 'rm -f "$payload" "$response"' EXIT

python3 - "$event" "$mode" > "$payload" <<'PY'
import json, sys
event = json.load(open(sys.argv[1]))
if sys.argv[2] == "--dry-run":
    event["dry_run"] = True
json.dump(event, sys.stdout)
PY

# One attempt and a read timeout as long as Lambda's longest run: a CLI retry after its
# default 60 s would start a second invocation while the first is still working.
error=$(AWS_MAX_ATTEMPTS=1 aws lambda invoke \
    --function-name "$function_name" \
    --payload "fileb://$payload" \
    --cli-read-timeout 900 \
    --query FunctionError --output text \
    "$response")
cat "$response"
echo
if [ "$error" != "None" ]; then
    echo "rds-initializer failed ($error): the error is above" >&2
    exit 1
fi
