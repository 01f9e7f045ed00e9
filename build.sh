#!/usr/bin/env bash
# Build dist/rds-initializer.zip for the AWS Lambda runtime (not for this machine):
# lambda_function.py plus the requirements' wheels for the Lambda's CPU and Python, at the zip root.
# boto3 (and with it botocore, s3transfer, ...) is left out: the Lambda runtime ships it.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    echo "usage: $0 [--arch x86_64|arm64] [--python 3.12]"
}

arch=x86_64
python_version=3.12
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch="${2:?--arch needs a value}"; shift 2 ;;
        --arch=*) arch="${1#*=}"; shift ;;
        --python) python_version="${2:?--python needs a value}"; shift 2 ;;
        --python=*) python_version="${1#*=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$arch" in
    x86_64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "--arch must be x86_64 or arm64, not: $arch" >&2; exit 2 ;;
esac
# manylinux2014 (glibc 2.17) suits every runtime. Runtimes from python3.12 on run on
# Amazon Linux 2023 (glibc 2.34), so manylinux_2_28 wheels are fine there too; psycopg2-binary
# 2.9.13 ships its aarch64 wheel only as manylinux_2_28.
platforms=(--platform "manylinux2014_$machine")
case "$python_version" in
    3.[0-9] | 3.1[01]) ;;
    *) platforms+=(--platform "manylinux_2_28_$machine") ;;
esac

python=${PYTHON:-python3}
handler=deploy/lambda_function.py
package=build/package
zip_path=dist/rds-initializer.zip
[ -f "$handler" ] || { echo "missing $handler" >&2; exit 1; }

echo "build: requirements for Lambda python$python_version on $arch (boto3 left out)"
rm -rf "$package"
mkdir -p "$package" dist
# Drop comments and the runtime-provided boto3/botocore/s3transfer lines.
grep -vE '^[[:space:]]*(#|$)' requirements.txt \
    | grep -viE '^[[:space:]]*(boto3|botocore|s3transfer)([^A-Za-z0-9_.-]|$)' \
    > build/requirements-lambda.txt || true
if [ -s build/requirements-lambda.txt ]; then
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target "$package" "${platforms[@]}" --implementation cp \
        --python-version "$python_version" --only-binary=:all: \
        -r build/requirements-lambda.txt
fi

# Guard: a dependency must never drag the runtime's own boto3/botocore into the zip.
for shipped in boto3 botocore s3transfer; do
    if [ -e "$package/$shipped" ]; then
        echo "build: $shipped ended up in the package; it must come from the runtime" >&2
        exit 1
    fi
done

cp "$handler" "$package/lambda_function.py"
find "$package" -name __pycache__ -type d -prune -exec rm -rf {} +
rm -rf "$package/bin"

echo "build: zipping $zip_path"
rm -f "$zip_path"
"$python" - "$package" "$zip_path" <<'EOF'
"""Zip the package dir with its contents at the zip root.

Modes are normalised to 0644/0755: Lambda runs the code as a non-root user, so a file
that is not world-readable fails at import time. Fixed timestamps keep builds reproducible.
"""

import sys
import zipfile
from pathlib import Path

source, target = Path(sys.argv[1]), Path(sys.argv[2])
with zipfile.ZipFile(target, "w") as zf:
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        info = zipfile.ZipInfo(path.relative_to(source).as_posix(), (1980, 1, 1, 0, 0, 0))
        mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
        info.external_attr = (0o100000 | mode) << 16
        zf.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED, compresslevel=9)
EOF

size=$(stat -c %s "$zip_path")
echo "build: $zip_path ($arch, python$python_version): $size bytes ($((size / 1024)) KiB)"
