#!/usr/bin/env bash
# Build hpcportal_<version>_amd64.deb with dpkg-buildpackage (debhelper).
#
# Usage: packaging/build-deb.sh [OUTPUT_DIR]           (default: ./dist)
#   HPCPORTAL_WHEELHOUSE  folder of dependency wheels, reused between builds
#                         (default /var/cache/hpcportal/wheelhouse)
#   HPCPORTAL_OFFLINE=1   never ask PyPI: every wheel must already be in the wheelhouse
#   HPCPORTAL_DEB_COMPRESSION  xz (default), zstd, gzip, none
#   PYTHON                the Python that builds the wheels (default: python3); the
#                         same minor version as the target's /usr/bin/python3
#
# The source tree is copied (what git tracks, plus uncommitted edits to those files)
# to a temporary folder with packaging/debian/ as debian/, so the checkout is never
# written to. Offline sites: run this once where PyPI answers, copy the wheelhouse
# folder over, and build with HPCPORTAL_OFFLINE=1 (debian/rules itself never uses
# the network).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-$REPO/dist}")
WHEELHOUSE=${HPCPORTAL_WHEELHOUSE:-/var/cache/hpcportal/wheelhouse}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" "$WHEELHOUSE"
# Compiled wheels must fit the target's /usr/bin/python3, which the venv is made with.
want=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
have=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$want" != "$have" ]; then
    echo "PYTHON is $have but /usr/bin/python3 is $want: set PYTHON to a $want interpreter" >&2
    exit 2
fi
WORK=$(mktemp -d /tmp/hpcportal-deb.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# 1. The source: tracked files as they are now (no virtualenv, caches, clusters).
SRC="$WORK/hpcportal"
mkdir -p "$SRC"
git -C "$REPO" ls-files -z --cached --others --exclude-standard -- \
    pyproject.toml README.md CHANGELOG.md LICENSE src \
    | (cd "$REPO" && xargs -0 cp --parents -t "$SRC" 2>/dev/null || true)
find "$SRC" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
cp -r "$REPO/packaging/debian" "$SRC/debian"

# 2. Wheels: the portal's (fresh every time) and its dependencies (cached).
mkdir -p "$WORK/dist"
if [ "${HPCPORTAL_OFFLINE:-0}" = 1 ]; then
    "$PYTHON" -m pip wheel --quiet --no-index --find-links "$WHEELHOUSE" \
        --wheel-dir "$WHEELHOUSE" "$SRC"
else
    # Offline first (quick once the wheelhouse is full), then PyPI for what is missing;
    # setuptools and wheel too, so the next offline build can build the portal's wheel.
    "$PYTHON" -m pip wheel --quiet --no-index --find-links "$WHEELHOUSE" \
        --wheel-dir "$WHEELHOUSE" "$SRC" 2>/dev/null \
        || "$PYTHON" -m pip wheel --quiet --find-links "$WHEELHOUSE" \
            --wheel-dir "$WHEELHOUSE" "$SRC" "setuptools>=77" wheel
fi
# The portal's wheel is moved out of the wheelhouse: a stale one is never reused.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$SRC/pyproject.toml")
mv "$WHEELHOUSE/hpcportal-$version-py3-none-any.whl" "$WORK/dist/"

# 3. The package.
(
    cd "$SRC"
    HPCPORTAL_WHEEL="$WORK/dist/hpcportal-$version-py3-none-any.whl" \
    HPCPORTAL_WHEELHOUSE="$WHEELHOUSE" \
        dpkg-buildpackage -b -us -uc --no-pre-clean
)
mv "$WORK"/hpcportal_*.deb "$OUT/"
cp "$WORK/dist/hpcportal-$version-py3-none-any.whl" "$OUT/"
ls "$OUT"/hpcportal_"$version"_*.deb
