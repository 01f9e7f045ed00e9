#!/usr/bin/env bash
# Build dist/rds-initializer-<arch>.zip for the AWS Lambda runtime (not for this machine):
# lambda_function.py plus the requirements' wheels for the Lambda's CPU and Python, at the zip root.
# boto3 (and with it botocore, s3transfer, ...) is left out: the Lambda runtime ships it.
# --ca-bundle FILE adds FILE as rds-ca-bundle.pem, which makes verify-full the function's default
# TLS mode (for RDS: AWS's global bundle, global-bundle.pem, downloaded from AWS).
# --output FILE writes the zip elsewhere. Wheels are cached in .cache/wheels/<python>-<arch>/,
# zopfli's deflate streams of the large libraries in .cache/deflate/.
# A zip over 6 MB (6000000 bytes) fails the build unless --max-bytes raises the limit.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    echo "usage: $0 [--arch x86_64|arm64] [--python 3.12|3.13] [--ca-bundle FILE.pem]" \
        "[--output FILE.zip] [--max-bytes N]"
}

arch=x86_64
python_version=3.12
ca_bundle=
zip_path=
max_bytes=6000000
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
        --max-bytes) max_bytes="${2:?--max-bytes needs a number}"; shift 2 ;;
        --max-bytes=*) max_bytes="${1#*=}"; shift ;;
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
case "$max_bytes" in
    '' | *[!0-9]*) echo "--max-bytes must be a number of bytes, not: $max_bytes" >&2; exit 2 ;;
esac
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

# zopfli finds a deflate stream about 4% smaller than zlib's best for the large shared libraries
# (about 180 KB on arm64, where the zip is closest to its limit), once per file: the result is
# cached in .cache/deflate by content. It is installed for the build only, into
# .cache/build-tools; without it (no network, Python < 3.10) the zip is plain zlib -9.
tools=.cache/build-tools
zopfli_version=0.4.3
if [ ! -f "$tools/zopfli-$zopfli_version.dist-info/RECORD" ]; then
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --upgrade --target "$tools" "zopfli==$zopfli_version" >/dev/null 2>&1 ||
        echo "build: zopfli $zopfli_version could not be installed: zlib only" >&2
fi

echo "build: zipping $zip_path"
mkdir -p "$(dirname "$zip_path")"
rm -f "$zip_path"
PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}" "$python" - "$package" "$zip_path" .cache/deflate <<'EOF'
"""Zip the package dir with its contents at the zip root.

Modes are normalised to 0644/0755: Lambda runs the code as a non-root user, so a file
that is not world-readable fails at import time. Fixed timestamps keep builds reproducible.
Files of 1 MB and more get zopfli's deflate stream when it is smaller (zopfli is
deterministic, so builds stay reproducible); the zip is checked by decompressing it whole.
"""

import hashlib
import os
import sys
import zipfile
import zlib
from pathlib import Path

try:
    import zopfli.zopfli as zopfli
except ImportError:
    zopfli = None

source, target, cache = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
LARGE = 1_000_000


def zlib_deflate(data):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def best_deflate(data):
    """A raw deflate stream smaller than zlib's, or None. The cache holds zopfli's stream, or
    nothing when zlib's was smaller."""
    if zopfli is None or len(data) < LARGE:
        return None
    cached = cache / f"{hashlib.sha256(data).hexdigest()}.zopfli1"
    if not cached.exists():
        cache.mkdir(parents=True, exist_ok=True)
        stream = zopfli.compress(data, numiterations=1, gzip_mode=0)[2:-4]  # zlib -> raw
        partial = cached.parent / f"{cached.name}.{os.getpid()}.tmp"
        partial.write_bytes(stream if len(stream) < len(zlib_deflate(data)) else b"")
        partial.rename(cached)
    return cached.read_bytes() or None


class Precompressed:
    """Stands in for zipfile's compressor: hands over a stream deflated beforehand."""

    def __init__(self, stream):
        self.stream = stream

    def compress(self, data):
        stream, self.stream = self.stream, b""
        return stream

    def flush(self):
        return b""


pending = []
zlib_compressor = zipfile._get_compressor


def get_compressor(compress_type, compresslevel=None):
    if pending:
        return Precompressed(pending.pop())
    return zlib_compressor(compress_type, compresslevel)


zipfile._get_compressor = get_compressor
with zipfile.ZipFile(target, "w") as zf:
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        info = zipfile.ZipInfo(path.relative_to(source).as_posix(), (1980, 1, 1, 0, 0, 0))
        mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
        info.external_attr = (0o100000 | mode) << 16
        data = path.read_bytes()
        stream = best_deflate(data)
        if stream is not None:
            pending.append(stream)
        zf.writestr(info, data, zipfile.ZIP_DEFLATED, compresslevel=9)
        assert not pending, "the precompressed stream was not used"
with zipfile.ZipFile(target) as zf:
    broken = zf.testzip()
    if broken is not None:
        sys.exit(f"build: {broken} does not decompress to its content")
EOF

size=$(stat -c %s "$zip_path")
echo "build: $zip_path ($arch, python$python_version): $size bytes ($((size / 1024)) KiB)"
if [ "$size" -gt "$max_bytes" ]; then
    echo "build: $zip_path is $size bytes, over the limit of $max_bytes: a dependency grew or" \
        "came back, zopfli could not be used (see above), or the CA bundle is large (the" \
        "region's bundle is a few KB, the global one about 160 KB). --max-bytes raises the" \
        "limit; Lambda accepts zips up to 50 MB." >&2
    exit 1
fi
