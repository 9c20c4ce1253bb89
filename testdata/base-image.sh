#!/usr/bin/env bash
# Makes the end-to-end tests' base image once: Debian bookworm minbase with
# python3 and python3-venv (debootstrap, about 2.5 minutes), packed as a
# rootfs tar. Cached under /var/tmp; later runs return at once.
# Usage: bash testdata/base-image.sh [CACHE_DIR]  -> prints the tar's path
set -euo pipefail
dir=${1:-/var/tmp/comfy-image-base}
tarball=$dir/bookworm-python3.tar
if [ -s "$tarball" ]; then echo "$tarball"; exit 0; fi
mkdir -p "$dir"
root=$(mktemp -d "$dir/rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
  { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner --sort=name --mtime=@0 -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
