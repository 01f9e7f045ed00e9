#!/usr/bin/env bash
# Build dist/rds-initializer-<arch>.zip for the AWS Lambda runtime (not for this machine):
# lambda_function.py plus the requirements' wheels for the Lambda's CPU and Python, at the zip root.
# boto3 (and with it botocore, s3transfer, ...) is left out: the Lambda runtime ships it.
# --ca-bundle FILE adds FILE as rds-ca-bundle.pem, which makes verify-full the function's default
# TLS mode (for RDS: AWS's global bundle, global-bundle.pem, downloaded from AWS).
# --output FILE writes the zip elsewhere. Wheels are cached in .cache/wheels/<python>-<arch>/.
# The zip holds the handler, psycopg2 (with the shared libraries its wheel bundles), PyMySQL and
# their licenses, nothing else; deflated by zlib, with fixed modes and timestamps (reproducible).
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    echo "usage: $0 [--arch x86_64|arm64] [--python 3.12|3.13] [--ca-bundle FILE.pem]" \
        "[--output FILE.zip]"
}

arch=x86_64
python_version=3.12
ca_bundle=
zip_path=
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch="${2:?--arch needs a value}"; shift 2 ;;
        --arch=*) arch="${1#*=}"; shift ;;
        --python) python_version="${2:?--python needs a value}"; shift 2 ;;
        --python=*) python_version="${1#*=}"; shift ;;
        --ca-bundle) ca_bundle="${2:?--ca-bundle needs a file}"; shift 2 ;;
        --ca-bundle=*) ca_bundle="${1#*=}"; shift ;;
        --output) zip_path="${2:?--output needs a file}"; shift 2 ;;
        --output=*) zip_path="${1#*=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$arch" in
    x86_64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "--arch must be x86_64 or arm64, not: $arch" >&2; exit 2 ;;
esac
case "$python_version" in
    3.12 | 3.13) ;;
    *) echo "--python must be 3.12 or 3.13 (the Lambda runtimes on Amazon Linux 2023), not: $python_version" >&2; exit 2 ;;
esac
if [ -n "$ca_bundle" ]; then
    [ -f "$ca_bundle" ] || { echo "--ca-bundle: no such file: $ca_bundle" >&2; exit 2; }
    grep -q -- "-----BEGIN CERTIFICATE-----" "$ca_bundle" ||
        { echo "--ca-bundle: $ca_bundle holds no PEM certificate" >&2; exit 2; }
fi
# manylinux2014 (glibc 2.17) suits every runtime. Runtimes from python3.12 on run on
# Amazon Linux 2023 (glibc 2.34), so manylinux_2_28 wheels are fine there too; psycopg2-binary
# 2.9.13 ships its aarch64 wheel only as manylinux_2_28.
platforms=(--platform "manylinux2014_$machine" --platform "manylinux_2_28_$machine")

python=${PYTHON:-python3}
handler=deploy/lambda_function.py
package=build/package-$arch
zip_path=${zip_path:-dist/rds-initializer-$arch.zip}
wheels=.cache/wheels/$python_version-$arch
[ -f "$handler" ] || { echo "missing $handler" >&2; exit 1; }

echo "build: requirements for Lambda python$python_version on $arch (boto3 left out)"
rm -rf "$package"
mkdir -p "$package" dist build "$wheels"
requirements=build/requirements-lambda-$arch.txt
# Drop comments and the runtime-provided boto3/botocore/s3transfer lines.
grep -vE '^[[:space:]]*(#|$)' requirements.txt \
    | grep -viE '^[[:space:]]*(boto3|botocore|s3transfer)([^A-Za-z0-9_.-]|$)' \
    > "$requirements" || true
if [ -s "$requirements" ]; then
    wheel_args=("${platforms[@]}" --implementation cp --python-version "$python_version"
        --only-binary=:all:)
    install_cached() {
        "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            --no-index --find-links "$wheels" --target "$package" "${wheel_args[@]}" \
            -r "$requirements" "$@"
    }
    # From the cache when it holds every pinned wheel (no network); else download, then install.
    if ! install_cached 2>/dev/null; then
        rm -rf "$package" && mkdir -p "$package"
        "$python" -m pip download --quiet --disable-pip-version-check --dest "$wheels" \
            "${wheel_args[@]}" -r "$requirements"
        install_cached
    fi
fi

# Guard: a dependency must never drag the runtime's own boto3/botocore into the zip.
for shipped in boto3 botocore s3transfer; do
    if [ -e "$package/$shipped" ]; then
        echo "build: $shipped ended up in the package; it must come from the runtime" >&2
        exit 1
    fi
done

cp "$handler" "$package/lambda_function.py"
# Amazon's root CAs, which RDS Proxy endpoints' certificates (AWS Certificate Manager) chain to:
# verify-full trusts them beside the RDS CA bundle.
cp "$(dirname "$handler")/amazon-root-cas.pem" "$package/amazon-root-cas.pem"
if [ -n "$ca_bundle" ]; then
    cp "$ca_bundle" "$package/rds-ca-bundle.pem"
    echo "build: CA bundle $ca_bundle added as rds-ca-bundle.pem: verify-full is the default"
fi
find "$package" -name __pycache__ -type d -prune -exec rm -rf {} +
rm -rf "$package/bin"
# The wheels' metadata is pip's, not the function's: only their licenses stay, in licenses/.
for info in "$package"/*.dist-info; do
    if [ -d "$info/licenses" ]; then
        mkdir -p "$package/licenses"
        cp -R "$info/licenses" "$package/licenses/$(basename "$info" .dist-info)"
    fi
    rm -rf "$info"
done

echo "build: zipping $zip_path"
mkdir -p "$(dirname "$zip_path")"
rm -f "$zip_path"
"$python" - "$package" "$zip_path" <<'EOF'
"""Zip the package dir with its contents at the zip root, deflated by zlib.

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
