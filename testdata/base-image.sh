#!/usr/bin/env bash
# Makes the end-to-end tests' base image once: Debian bookworm minbase with
# python3 and python3-venv (debootstrap, about 2.5 minutes), packed as a
# rootfs tar. Cached under /var/tmp; later runs return at once.
# It is then imported with podman and copied by skopeo into an OCI layout,
# $dir/oci:bookworm, which the tests use as --base oci:$dir/oci:bookworm.
# Usage: bash testdata/base-image.sh [CACHE_DIR]  -> prints the layout's path
set -euo pipefail
dir=${1:-/var/tmp/comfy-image-base}
tarball=$dir/bookworm-python3.tar
layout() {
  if [ ! -f "$dir/oci/index.json" ]; then
    podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      "$tarball" localhost/comfy-base:bookworm >/dev/null
    skopeo copy --quiet containers-storage:localhost/comfy-base:bookworm "oci:$dir/oci.tmp:bookworm"
    rm -rf "$dir/oci" && mv "$dir/oci.tmp" "$dir/oci"
  fi
  echo "$dir/oci"
}
if [ -s "$tarball" ]; then layout; exit 0; fi
mkdir -p "$dir"
root=$(mktemp -d "$dir/rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
  { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner --sort=name --mtime=@0 -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
layout
