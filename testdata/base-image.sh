#!/usr/bin/env bash
# Makes the base image of the demo and the end-to-end tests once: Debian
# bookworm minbase with python3 and python3-venv by debootstrap (about 2.5
# minutes), packed by `comfy-image base` into the OCI layout $dir/oci, tag
# bookworm (no container engine or skopeo needed). Later runs return at once.
# Usage: bash testdata/base-image.sh [CACHE_DIR]  -> prints the layout's path
#   CACHE_DIR     default /var/tmp/comfy-image-base
#   COMFY_IMAGE   the comfy-image binary (default: built here with go)
#   DEBIAN_MIRROR default http://deb.debian.org/debian
# Progress goes to stderr; needs root and debootstrap.
set -euo pipefail
dir=${1:-/var/tmp/comfy-image-base}
layout=$dir/oci
if [ -f "$layout/index.json" ]; then echo "$layout"; exit 0; fi

say() { echo "base-image: $*" >&2; }
fail() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || fail "making the base needs root (debootstrap); run as root or give a base with --base"
command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
mkdir -p "$dir"
# One maker at a time; a second waits and then finds the layout made.
exec 9>"$dir/.lock"
flock 9
if [ -f "$layout/index.json" ]; then echo "$layout"; exit 0; fi

bin=${COMFY_IMAGE:-}
if [ -z "$bin" ]; then
  bin=$dir/comfy-image
  say "building comfy-image into $bin"
  (cd "$(dirname "$0")/.." && go build -o "$bin" ./cmd/comfy-image)
fi

root=$(mktemp -d "$dir/rootfs.XXXXXX")
trap 'rm -rf "$root" "$layout.tmp"' EXIT
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log=$dir/debootstrap.log
say "making the base: debootstrap --variant=minbase --include=python3,python3-venv bookworm from $mirror"
say "(a few minutes; log: $log)"
start=$SECONDS
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" >"$log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do kill -0 "$pid" 2>/dev/null && sleep 1; done
  kill -0 "$pid" 2>/dev/null && say "  $((SECONDS - start))s: $(tail -n 1 "$log" | cut -c1-80)"
done
wait "$pid" || { tail -20 "$log" >&2; fail "debootstrap failed after $((SECONDS - start))s (log: $log)"; }
say "debootstrap done in $((SECONDS - start))s"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
rm -rf "$layout.tmp"
"$bin" base --rootfs "$root" --output "oci:$layout.tmp:bookworm" >&2
mv "$layout.tmp" "$layout"
say "base image ready: oci:$layout:bookworm ($((SECONDS - start))s)"
echo "$layout"
