#!/usr/bin/env bash
# Measures a rerun of realize on a finished target (should be a no-op well
# under a second) against the first realize of the same version, and against
# `git status` of a checkout of similar size as a peer: both only stat files.
# Usage: bash bench/realize-noop.sh [bin/comfy-image]
set -euo pipefail
bin=$(realpath "${1:-bin/comfy-image}")
out=$(realpath -m "${DEMO_OUT:-demo-out}")
DEMO_OUT=$out bash "$(dirname "$0")/../testdata/demo/demo.sh" "$bin" >/dev/null 2>&1
cd "$out"
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
rm -rf bench-target
first=$(ms "$bin" realize --version-id demo --target bench-target --wheels-dir wheels)
runs=10 total=0 worst=0
for _ in $(seq $runs); do
  t=$(ms "$bin" realize --version-id demo --target bench-target --wheels-dir wheels)
  total=$((total + t)); [ "$t" -gt "$worst" ] && worst=$t
done
git_total=0
for _ in $(seq $runs); do git_total=$((git_total + $(ms git -C repos/ComfyUI status --porcelain))); done
echo "first realize:            ${first} ms"
echo "no-op rerun (mean of $runs): $((total / runs)) ms (worst ${worst} ms)"
echo "peer: git status (mean):  $((git_total / runs)) ms"
awk -v a="$first" -v b="$((total / runs))" 'BEGIN { if (b == 0) b = 1; printf "rerun is %.0fx faster than the first realize\n", a / b }'
