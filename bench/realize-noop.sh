#!/usr/bin/env bash
# Measures a rerun of realize on a finished target with --locked (the lock is
# the truth: no network; should be a no-op well under a second) against the
# first realize of the same version, against an online rerun (one ref
# listing per repository, no fetch), and against `git status` of a checkout
# of similar size as a peer: all of them only stat files.
# Usage: bash bench/realize-noop.sh [bin/comfy-image]
set -euo pipefail
bin=$(realpath "${1:-bin/comfy-image}")
out=$(realpath -m "${DEMO_OUT:-demo-out}")
DEMO_OUT=$out bash "$(dirname "$0")/../testdata/demo/demo.sh" "$bin" >/dev/null 2>&1
cd "$out"
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
rm -rf bench-target
first=$(ms "$bin" realize --version-id demo --target bench-target --wheels-dir wheels)
runs=10
mean() { # mean and worst of $runs runs of the command
  local total=0 worst=0 t
  for _ in $(seq $runs); do
    t=$(ms "$@"); total=$((total + t)); [ "$t" -gt "$worst" ] && worst=$t
  done
  echo "$((total / runs)) ms (worst ${worst} ms)"
}
locked=$(mean "$bin" realize --version-id demo --target bench-target --wheels-dir wheels --locked)
online=$(mean "$bin" realize --version-id demo --target bench-target --wheels-dir wheels)
peer=$(mean git -C repos/ComfyUI status --porcelain)
echo "first realize:                           ${first} ms"
echo "no-op rerun --locked (mean of $runs):       $locked"
echo "no-op rerun online (mean of $runs):         $online  (one ref listing per repository)"
echo "peer: git status (mean of $runs):           $peer"
awk -v a="$first" -v b="${locked%% *}" 'BEGIN { if (b == 0) b = 1; printf "--locked rerun is %.0fx faster than the first realize\n", a / b }'
