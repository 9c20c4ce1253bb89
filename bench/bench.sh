#!/usr/bin/env bash
# bench/bench.sh: issue 9's benchmarks, one run on one machine against one
# local docker-registry (Debian's package). It makes its own fixtures (git
# repositories with the git CLI, wheels built like internal/testsupport's,
# random model files served by file://), then measures comfy-image against
# its peers side by side: buildah bud + push of the Dockerfile a user would
# write, skopeo copy of the finished image, go-containerregistry's plain
# remote.Write, and openssl dgst -sha256 over the model files. It writes
# bench/results/<size>.md and rebuilds bench/RESULTS.md from every section
# there.
#
# Usage: bash bench/bench.sh [bin/comfy-image]
# Sizes: BENCH_NODES (20), BENCH_MODELS (4), BENCH_MODEL_MB (256).
# BENCH_OUT (bench-out) holds fixtures, caches, logs; BENCH_BASE the OCI
# layout of the base image (/var/tmp/comfy-image-base/oci, tag bookworm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin=$(realpath "${1:-bin/comfy-image}")
NODES=${BENCH_NODES:-20} MODELS=${BENCH_MODELS:-4} MODEL_MB=${BENCH_MODEL_MB:-256}
size="${NODES}-nodes-${MODELS}x${MODEL_MB}MB"
top=$(realpath -m "${BENCH_OUT:-bench-out}")
out=$top/$size
fix=$top/fixtures
base_oci=${BENCH_BASE:-/var/tmp/comfy-image-base/oci}
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
export PATH=$PATH:/usr/local/go/bin

for t in buildah skopeo docker-registry openssl git python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "bench: $t is not installed" >&2; exit 1; }
done
[ -f "$base_oci/index.json" ] || { echo "bench: no base image at $base_oci (bash testdata/base-image.sh)" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out" "$fix"
log() { echo "bench: $*" >&2; }

# ---- registry -------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
regdata=$out/registry/data
mkdir -p "$regdata"
cat >"$out/registry/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $regdata
  delete:
    enabled: true
http:
  addr: $host
EOF
reglog=$out/registry/log
docker-registry serve "$out/registry/config.yml" >"$reglog" 2>&1 &
regpid=$!
buildah_root=$out/buildah
bah() { buildah --root "$buildah_root/root" --runroot "$buildah_root/run" --storage-driver overlay "$@"; }
cleanup() {
  kill "$regpid" 2>/dev/null || true
  bah rm -a >/dev/null 2>&1 || true
  bah rmi -a -f >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://$host/v2/" >/dev/null && break; sleep 0.1; done

# Access-log helpers (Apache combined format lines; the rest is logrus).
mark() { wc -l <"$reglog"; }
since() { tail -n +"$(($1 + 1))" "$reglog" | grep -E '^[0-9.]+ - - \[' || true; }
# blobs_up MARK: completed blob uploads (PUT .../blobs/uploads/..., 201).
blobs_up() { since "$1" | grep -cE '"PUT /v2/[^ ]*/blobs/uploads/[^ ]* HTTP/[0-9.]+" 201' || true; }
# bytes_up MARK: the sizes of the blobs those uploads completed.
bytes_up() {
  local total=0 hex f
  for hex in $(since "$1" | grep -E '"PUT /v2/[^ ]*/blobs/uploads/[^ ]* HTTP/[0-9.]+" 201' | grep -oE 'digest=sha256%3A[0-9a-f]{64}' | cut -c17-); do
    f=$regdata/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
    total=$((total + $(stat -c %s "$f")))
  done
  echo "$total"
}
# bytes_pulled MARK: bytes the registry sent for GET .../blobs/sha256:...
bytes_pulled() { since "$1" | awk -F'"' '$2 ~ /^GET \/v2\/.*\/blobs\/sha256:/ { split($3, a, " "); if (a[1] ~ /^20/) s += a[2] } END { print s + 0 }'; }
# requests MARK REPO-PREFIX: requests to /v2/ (the ping) and to repositories under the prefix.
requests() { since "$1" | awk -F'"' -v p="$2" '{ split($2, r, " "); if (r[2] == "/v2/" || index(r[2], "/v2/" p) == 1) n++ } END { print n + 0 }'; }

declare -A T RSS BLOBS UP PULL RCHAR RBYTES CMD REQ
# measure LABEL REQ-PREFIX CMD...: wall time, peak RSS of the process tree
# (/usr/bin/time -v), bytes read by the tree (/proc/<wrapper>/io after its
# children are reaped: Linux adds a reaped child's I/O counts to its parent),
# and the registry's view of the run (blobs and bytes up, bytes pulled,
# requests).
measure() {
  local label=$1 prefix=$2
  shift 2
  local m s e
  m=$(mark)
  if [ "$1" = bash ] && [ "$2" = -c ]; then CMD[$label]=$3; else CMD[$label]=$(printf '%q ' "$@"); fi
  log "$label: ${CMD[$label]}"
  s=$(date +%s%N)
  if ! BENCH_IO="$out/io.$label" /usr/bin/time -v -o "$out/time.$label" bash -c \
    '"$@" >"$BENCH_IO.log" 2>&1; rc=$?; while read -r l; do echo "$l"; done </proc/$$/io >"$BENCH_IO"; exit $rc' _ "$@"; then
    log "$label failed:"
    tail -30 "$out/io.$label.log" >&2
    exit 1
  fi
  e=$(date +%s%N)
  sleep 0.5 # the registry writes its access log after the response
  T[$label]=$(((e - s) / 1000000))
  RSS[$label]=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$out/time.$label")
  RCHAR[$label]=$(awk '/^rchar:/ { print $2 }' "$out/io.$label")
  RBYTES[$label]=$(awk '/^read_bytes:/ { print $2 }' "$out/io.$label")
  BLOBS[$label]=$(blobs_up "$m")
  UP[$label]=$(bytes_up "$m")
  PULL[$label]=$(bytes_pulled "$m")
  REQ[$label]=$(requests "$m" "$prefix")
  echo "$label $m $(mark)" >>"$out/marks" # access-log lines of each run, for a closer look
  log "$label: ${T[$label]} ms, ${RSS[$label]} kB peak RSS, ${BLOBS[$label]} blobs / ${UP[$label]} B up, ${PULL[$label]} B pulled, ${REQ[$label]} requests"
}

# ---- fixtures ---------------------------------------------------------------
log "fixtures: $NODES nodes, $MODELS x $MODEL_MB MB models in $out"
# Wheels, built like internal/testsupport/wheels.go (METADATA, WHEEL, RECORD).
wheels=$fix/wheels
if [ ! -d "$wheels" ]; then
  mkdir -p "$wheels"
  python3 - "$wheels" <<'PY'
import base64, hashlib, os, sys, zipfile
for i in range(8):
    name, version = f"benchpkg{i}", "1.0"
    files = {f"{name}/__init__.py": f"VERSION = '{version}'\n"}
    for j in range(4):  # some substance: 4 x 16 KB of source
        files[f"{name}/mod{j}.py"] = "".join(f"DATA_{k} = {os.urandom(24).hex()!r}\n" for k in range(256))
    di = f"{name}-{version}.dist-info"
    files[f"{di}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{di}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: comfy-image-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    rec = "".join(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b'=').decode()},{len(c)}\n" for p, c in sorted(files.items()))
    files[f"{di}/RECORD"] = rec + f"{di}/RECORD,,\n"
    with zipfile.ZipFile(f"{sys.argv[1]}/{name}-{version}-py3-none-any.whl", "w") as z:
        for p, c in sorted(files.items()):
            z.writestr(zipfile.ZipInfo(p, (2020, 1, 1, 0, 0, 0)), c)
PY
fi
# Repositories: a core of ~2 MB of source and nodes of ~200 KB each, each
# with a requirements.txt naming some of the wheels.
mkrepo() { # mkrepo DIR FILES REQS
  [ -d "$1/.git" ] && return
  mkdir -p "$1"
  python3 - "$1" "$2" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(d, "pkg"), exist_ok=True)
with open(os.path.join(d, "__init__.py"), "w") as f:
    f.write("NODE_CLASS_MAPPINGS = {}\n")
for i in range(n):
    with open(os.path.join(d, "pkg", f"file{i}.py"), "w") as f:
        f.write("".join(f"X{k} = {os.urandom(24).hex()!r}\n" for k in range(256)))
PY
  printf '%s\n' $3 >"$1/requirements.txt"
  git init -q -b main "$1"
  git -C "$1" add -A
  git -C "$1" commit -q -m initial
}
mkrepo "$fix/repos/ComfyUI" 128 "benchpkg0 benchpkg1 benchpkg2 benchpkg3"
mkrepo "$fix/repos/ComfyUI-min" 1 ""
for i in $(seq -w 1 "$NODES"); do mkrepo "$fix/repos/node$i" 12 "benchpkg$((4 + 10#$i % 4))"; done
mkdir -p "$fix/models"
for i in $(seq 1 "$MODELS"); do
  f=$fix/models/model$i-${MODEL_MB}MB.safetensors
  if [ ! -f "$f" ]; then head -c "${MODEL_MB}M" /dev/urandom >"$f.tmp" && mv "$f.tmp" "$f"; fi
done
model_bytes=$((MODELS * MODEL_MB * 1024 * 1024))

# The spec: core, NODES nodes on branch main, MODELS checkpoints.
work=$out/work
mkdir -p "$work/versions"
writespec() { # writespec FILE CORE NODES
  python3 - "$1" "$2" "$3" "$fix" "$MODELS" "$MODEL_MB" <<'PY'
import json, sys
path, core, nodes, fix, models, mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
spec = {
    "schema_version": 2, "version_id": "bench",
    "comfy": {"repo": f"file://{fix}/repos/{core}", "ref": "main"},
    "custom_nodes": [{"repo": f"file://{fix}/repos/node{i:0{len(str(nodes))}d}", "name": f"node{i:0{len(str(nodes))}d}", "ref": "main"} for i in range(1, nodes + 1)],
    "models": [{"source": f"file://{fix}/models/model{i}-{mb}MB.safetensors", "name": f"model{i}", "target_subdir": "checkpoints"} for i in range(1, models + 1)],
}
json.dump(spec, open(path, "w"), indent=2)
PY
}
spec=$work/versions/bench.json
writespec "$spec" ComfyUI "$NODES"
mspec=$work/versions/models.json
writespec "$mspec" ComfyUI-min 0

# The base goes to the registry too, so a fresh runner's pulls show there.
skopeo copy -q --dest-tls-verify=false "oci:$base_oci:bookworm" "docker://$host/base/bookworm:latest"
base=$host/base/bookworm:latest
pad=${#NODES}
moved=$(printf "node%0${pad}d" $((NODES / 2)))
moved2=$(printf "node%0${pad}d" $((NODES / 2 + 1)))
commit_node() { # commit_node NAME TAG
  printf 'CHANGED = %q\n' "$2" >"$fix/repos/$1/changed.py"
  git -C "$fix/repos/$1" add -A && git -C "$fix/repos/$1" commit -q -m "change $2"
}
# Each run starts from the fixtures' first commits (a rerun of the bench
# must not see the previous run's moved nodes as the starting point).
for n in "$moved" "$moved2"; do
  if [ -f "$fix/repos/$n/changed.py" ]; then
    git -C "$fix/repos/$n" reset -q --hard "$(git -C "$fix/repos/$n" rev-list --max-parents=0 HEAD)"
  fi
done

build_args=(--spec "$spec" --base "$base" --wheels-dir "$wheels")

# ---- 1, 4: comfy-image first build, unchanged rebuild, one node changed -----
cd "$work"
measure ci_first bench/ env COMFY_CACHE="$out/cache1" "$bin" build "${build_args[@]}" --push "$host/bench/app:v1"
measure ci_unchanged bench/ env COMFY_CACHE="$out/cache1" "$bin" build "${build_args[@]}" --push "$host/bench/app:v1"

# ---- 2, 4: peers pushing the finished image ------------------------------------
skopeo copy -q --src-tls-verify=false "docker://$host/bench/app:v1" "oci:$out/layout:app"
skopeo copy -q --src-tls-verify=false "docker://$host/bench/app:v1-models" "oci:$out/layout:models"
# skopeo's blob-info cache (shared, under /var/lib/containers/cache) would
# mount the blobs from bench/app it just pulled: give it an empty one in a
# private mount namespace so it pushes every byte, as a first push does.
measure skopeo_copy skopeo/ unshare -m bash -c "mount -t tmpfs tmpfs /var/lib/containers/cache && skopeo copy -q --dest-tls-verify=false oci:$out/layout:app docker://$host/skopeo/app:v1 && skopeo copy -q --dest-tls-verify=false oci:$out/layout:models docker://$host/skopeo/app:v1-models"
(cd "$root" && go build -o "$out/rwrite" ./bench/rwrite)
measure rwrite_first rw/ bash -c "$out/rwrite $out/layout app $host/rw/app:v1 && $out/rwrite $out/layout models $host/rw/app:v1-models"
measure rwrite_again rw/ bash -c "$out/rwrite $out/layout app $host/rw/app:v1 && $out/rwrite $out/layout models $host/rw/app:v1-models"

commit_node "$moved" one
# The build uses the lock while it matches the spec, so the moved branch is
# seen by a lock first (timed apart; the row counts both).
measure ci_lock bench/ env COMFY_CACHE="$out/cache1" "$bin" lock --spec "$spec"
measure ci_onenode bench/ env COMFY_CACHE="$out/cache1" "$bin" build "${build_args[@]}" --push "$host/bench/app:v1"

rm -rf "$out/cache1"
# ---- 3: fresh caches (a new CI runner) ---------------------------------------
measure ci_fresh_unchanged bench/ env COMFY_CACHE="$out/cache2" "$bin" build "${build_args[@]}" --push "$host/bench/app:v1"
rm -rf "$out/cache2"
commit_node "$moved2" two
measure ci_fresh_onenode bench/ env COMFY_CACHE="$out/cache3" "$bin" build "${build_args[@]}" --push "$host/bench/app:v1"

# ---- 1: buildah bud + push of the Dockerfile a user would write --------------
ctx=$out/ctx
mkdir -p "$ctx/custom_nodes" "$ctx/models"
git clone -q "$fix/repos/ComfyUI" "$ctx/ComfyUI"
for i in $(seq -w 1 "$NODES"); do git clone -q "$fix/repos/node$i" "$ctx/custom_nodes/node$i"; done
git -C "$ctx/custom_nodes/$moved" reset -q --hard HEAD~1 # the version the first build saw
git -C "$ctx/custom_nodes/$moved2" reset -q --hard HEAD~1
ln "$fix"/models/*-"${MODEL_MB}"MB.safetensors "$ctx/models/"
cp -r "$wheels" "$ctx/wheels"
echo '**/.git' >"$ctx/.dockerignore"
{
  echo "FROM $base"
  echo "COPY models/ /opt/comfy/models/checkpoints/"
  echo "COPY ComfyUI/ /opt/comfy/ComfyUI/"
  reqs="-r /opt/comfy/ComfyUI/requirements.txt"
  for i in $(seq -w 1 "$NODES"); do
    echo "COPY custom_nodes/node$i/ /opt/comfy/ComfyUI/custom_nodes/node$i/"
    reqs="$reqs -r /opt/comfy/ComfyUI/custom_nodes/node$i/requirements.txt"
  done
  echo "COPY wheels/ /tmp/wheels/"
  echo "RUN python3 -m venv /opt/comfy/.venv && /opt/comfy/.venv/bin/pip install -q --no-index --find-links /tmp/wheels $reqs"
} >"$ctx/Dockerfile"
bud() { echo "buildah --root $buildah_root/root --runroot $buildah_root/run --storage-driver overlay bud -q --layers --isolation chroot --tls-verify=false -t bench-app:v1 $ctx && buildah --root $buildah_root/root --runroot $buildah_root/run --storage-driver overlay push -q --tls-verify=false bench-app:v1 docker://$host/buildah/app:v1"; }
measure bah_first buildah/ bash -c "$(bud)"
measure bah_unchanged buildah/ bash -c "$(bud)"
git -C "$ctx/custom_nodes/$moved" pull -q --ff-only
measure bah_onenode buildah/ bash -c "$(bud)"

# ---- 5: the models image, against one openssl pass over the same files -------
# What a models image costs when the cache knows no digests is reading each
# model once (its sha256 for the lock, its layer's digest) and asking the
# registry what it lacks. Its upload is a push of the bytes, which row 2
# compares with skopeo already; a 1 GB upload to this registry alone takes
# several times one sha256 pass, so with it in the time 5a would measure
# the registry, not the build. So the registry holds the model blobs
# before the timed run, pushed by another runner (its own cache) under
# another tag of the same repository: the timed run must read and digest
# every model (its cache never saw them, and nothing at its tags names
# them) and then uploads no model byte, which the table shows (blobs up).
# 5c keeps the whole cost, upload included, for the record.
measure openssl "" openssl dgst -sha256 "$fix"/models/*-"${MODEL_MB}"MB.safetensors
# The app part first (untimed), so the timed build below has only the
# models image to make: a cache that has never seen a model's digest.
env COMFY_CACHE="$out/cache4" "$bin" build --spec "$mspec" --base "$base" --wheels-dir "$wheels" --models skip --push "$host/models/m:v1" >"$out/models-app.log" 2>&1
env COMFY_CACHE="$out/cache5" "$bin" build --spec "$mspec" --base "$base" --wheels-dir "$wheels" --push "$host/models/m:other-runner" >"$out/models-other.log" 2>&1
rm -rf "$out/cache5"
measure ci_models_cold models/ env COMFY_CACHE="$out/cache4" "$bin" build --spec "$mspec" --base "$base" --wheels-dir "$wheels" --push "$host/models/m:v1"
measure ci_models_warm models/ env COMFY_CACHE="$out/cache4" "$bin" build --spec "$mspec" --base "$base" --wheels-dir "$wheels" --push "$host/models/m:v1"
env COMFY_CACHE="$out/cache6" "$bin" build --spec "$mspec" --base "$base" --wheels-dir "$wheels" --models skip --push "$host/modelsup/m:v1" >"$out/models-up-app.log" 2>&1
measure ci_models_upload modelsup/ env COMFY_CACHE="$out/cache6" "$bin" build --spec "$mspec" --base "$base" --wheels-dir "$wheels" --push "$host/modelsup/m:v1"

# ---- 2 and 5a again --------------------------------------------------------------
# Rows 2 and 5a are ratios of two timed runs, and on a machine shared with
# other agents one pair says little. Each pair is run BENCH_REPEAT times in
# all (3 by default), ours then the peer's, each time from fresh caches into
# fresh repositories (the same work as the first pair), and the table gives
# the median ratio with every sample.
REPEAT=${BENCH_REPEAT:-3}
for r in $(seq 2 "$REPEAT"); do
  measure "ci_first_$r" "bench$r/" env COMFY_CACHE="$out/cache1_$r" "$bin" build "${build_args[@]}" --push "$host/bench$r/app:v1"
  measure "skopeo_copy_$r" "skopeo$r/" unshare -m bash -c "mount -t tmpfs tmpfs /var/lib/containers/cache && skopeo copy -q --dest-tls-verify=false oci:$out/layout:app docker://$host/skopeo$r/app:v1 && skopeo copy -q --dest-tls-verify=false oci:$out/layout:models docker://$host/skopeo$r/app:v1-models"
  rm -rf "$out/cache1_$r"
  env COMFY_CACHE="$out/cache4_$r" "$bin" build --spec "$mspec" --base "$base" --wheels-dir "$wheels" --models skip --push "$host/models$r/m:v1" >"$out/models-app-$r.log" 2>&1
  env COMFY_CACHE="$out/cache5_$r" "$bin" build --spec "$mspec" --base "$base" --wheels-dir "$wheels" --push "$host/models$r/m:other-runner" >"$out/models-other-$r.log" 2>&1
  rm -rf "$out/cache5_$r"
  measure "ci_models_cold_$r" "models$r/" env COMFY_CACHE="$out/cache4_$r" "$bin" build --spec "$mspec" --base "$base" --wheels-dir "$wheels" --push "$host/models$r/m:v1"
  measure "openssl_$r" "" openssl dgst -sha256 "$fix"/models/*-"${MODEL_MB}"MB.safetensors
  rm -rf "$out/cache4_$r"
done

# ---- the table -------------------------------------------------------------------
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1048576 }'; }
secs() { awk -v m="$1" 'BEGIN { printf "%.1f s", m / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) b = 1; printf "%.3f", a / b }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# samples OURS PEER INVERT: the ratios of the repeated pairs (label, label_2, ...),
# ours / peer, or peer / ours when INVERT is 1 (a speed).
samples() {
  local r sfx
  for r in $(seq 1 "$REPEAT"); do
    sfx=; [ "$r" -gt 1 ] && sfx=_$r
    if [ "$3" = 1 ]; then ratio "${T[$2$sfx]}" "${T[$1$sfx]}"; else ratio "${T[$1$sfx]}" "${T[$2$sfx]}"; fi
    echo
  done
}
pairs() { # pairs OURS PEER: "ours/peer s" of each pair
  local r sfx out=
  for r in $(seq 1 "$REPEAT"); do
    sfx=; [ "$r" -gt 1 ] && sfx=_$r
    out="$out${out:+, }$(secs "${T[$1$sfx]}")/$(secs "${T[$2$sfx]}")"
  done
  echo "$out"
}
verdict() { if "$@"; then echo met; else echo "**missed**"; fi; }
ts=$(date -u +%Y-%m-%dT%H:%MZ)
cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)
rev=$(git -C "$root" rev-parse --short HEAD)
mkdir -p "$here/results"
sec=$here/results/$size.md
row() { # row WHAT OURS PEER RATIO TARGET VERDICT
  printf '| %s | %s | %s | %s | %s | %s |\n' "$@"
}
part() { # part LABEL: time, blobs, bytes up, pulled, RSS as one cell
  printf '%s, %s blobs / %s up, %s pulled, RSS %s MB' "$(secs "${T[$1]}")" "${BLOBS[$1]}" "$(mb "${UP[$1]}")" "$(mb "${PULL[$1]}")" "$((${RSS[$1]} / 1024))"
}
{
  echo "## $NODES nodes, $MODELS x $MODEL_MB MB models"
  echo
  echo "Run $ts on $(nproc) cores ($cpu), $mem RAM, $(uname -sr), comfy-image at $rev; docker-registry 2.8 on $host"
  echo "(filesystem storage), buildah $(buildah --version | awk '{print $3}') (overlay, chroot isolation, --layers),"
  echo "skopeo $(skopeo --version | awk '{print $3}'), $(openssl version | awk '{print $1, $2}'). The machine is shared with other agents:"
  echo "times are one sample each, but rows 2 and 5a, which are the median of $REPEAT pairs (BENCH_REPEAT). Ratio = comfy-image / peer."
  echo
  echo "| # | what | comfy-image | peer | ratio | target | verdict |"
  echo "|---|---|---|---|---|---|---|"
  r=$(ratio "${T[ci_first]}" "${T[bah_first]}")
  echo "| 1a | first build + push | $(part ci_first) | buildah bud+push: $(part bah_first) | $r | <= 0.25 | $(verdict le "$r" 0.25) |"
  r=$(ratio "${T[ci_unchanged]}" "${T[bah_unchanged]}")
  echo "| 1b | unchanged rebuild | $(part ci_unchanged) | buildah: $(part bah_unchanged) | $r | <= 0.1, 0 blobs | $(verdict eval "le $r 0.1 && [ ${BLOBS[ci_unchanged]} -eq 0 ]") |"
  r=$(ratio "$((${T[ci_lock]} + ${T[ci_onenode]}))" "${T[bah_onenode]}")
  echo "| 1c | one node changed (lock $(secs "${T[ci_lock]}") + build) | $(part ci_onenode) | buildah: $(part bah_onenode) | $r | <= 0.05, 2 blobs | $(verdict eval "le $r 0.05 && [ ${BLOBS[ci_onenode]} -eq 2 ]") |"
  # shellcheck disable=SC2046
  r=$(median $(samples ci_first skopeo_copy 0))
  echo "| 2 | first build vs raw push of the same bytes (median of $REPEAT pairs, ours/skopeo: $(pairs ci_first skopeo_copy)) | $(secs "${T[ci_first]}") | skopeo copy (app + models, OCI layout to an empty repo): $(part skopeo_copy) | $r ($(samples ci_first skopeo_copy 0 | paste -sd' ')) | <= 1.1 | $(verdict le "$r" 1.1) |"
  echo "| 3a | fresh cache, unchanged | $(part ci_fresh_unchanged) | | | < 5 MB pulled, 0 blobs | $(verdict eval "[ ${PULL[ci_fresh_unchanged]} -lt 5242880 ] && [ ${BLOBS[ci_fresh_unchanged]} -eq 0 ]") |"
  echo "| 3b | fresh cache, one node moved | $(part ci_fresh_onenode) | | | < 5 MB pulled, 2 blobs | $(verdict eval "[ ${PULL[ci_fresh_onenode]} -lt 5242880 ] && [ ${BLOBS[ci_fresh_onenode]} -eq 2 ]") |"
  r=$(ratio "${REQ[ci_first]}" "${REQ[rwrite_first]}")
  echo "| 4a | requests, first push (app + models) | ${REQ[ci_first]} | remote.Write: ${REQ[rwrite_first]} | $r | <= 1 | $(verdict le "$r" 1) |"
  echo "| 4b | requests, push with nothing new (2 images) | ${REQ[ci_unchanged]} | remote.Write: ${REQ[rwrite_again]} | $(ratio "${REQ[ci_unchanged]}" "${REQ[rwrite_again]}") | <= 3 per image | $(verdict le "${REQ[ci_unchanged]}" 6) |"
  # shellcheck disable=SC2046
  r=$(median $(samples ci_models_cold openssl 1))
  echo "| 5a | models image, cache knows no digests (each model read once: sha256 + layer digest; the blobs already in the registry from another runner, nothing uploaded; app part already pushed; median of $REPEAT pairs, ours/openssl: $(pairs ci_models_cold openssl)) | $(part ci_models_cold), read $(mb "${RCHAR[ci_models_cold]}") | openssl dgst -sha256: $(secs "${T[openssl]}"), read $(mb "${RCHAR[openssl]}") | speed $r ($(samples ci_models_cold openssl 1 | paste -sd' ')) | >= 0.8 | $(verdict le 0.8 "$r") |"
  echo "| 5b | models image, cache knows digests | $(part ci_models_warm), read $(mb "${RCHAR[ci_models_warm]}") (read_bytes $(mb "${RBYTES[ci_models_warm]}")) | models: $(mb $model_bytes) | | 0 model bytes read | $(verdict [ "${RCHAR[ci_models_warm]}" -lt 5242880 ]) (the whole tree read < 5 MB, less than any model) |"
  echo "| 5c | models image, cache knows no digests, to an empty repository (as 5a, plus the upload of every model byte; for the record) | $(part ci_models_upload), read $(mb "${RCHAR[ci_models_upload]}") | openssl dgst -sha256: $(secs "${T[openssl]}") | speed $(ratio "${T[openssl]}" "${T[ci_models_upload]}") | | (no target: the upload is row 2's) |"
  worst=0 worstl=
  for l in ci_first ci_unchanged ci_lock ci_onenode ci_fresh_unchanged ci_fresh_onenode ci_models_cold ci_models_warm ci_models_upload; do
    [ "${RSS[$l]}" -gt "$worst" ] && worst=${RSS[$l]} worstl=$l
  done
  echo "| 6 | peak RSS, every comfy-image run | $((worst / 1024)) MB ($worstl) | | | < 300 MB | $(verdict [ "$worst" -lt $((300 * 1024)) ]) |"
  echo
  echo "Bytes read (rchar of the process tree, /proc/<wrapper>/io after the tool and its children were reaped):"
  for l in ci_first ci_unchanged ci_onenode ci_fresh_unchanged ci_fresh_onenode ci_models_cold ci_models_warm ci_models_upload openssl; do
    echo "$l $(mb "${RCHAR[$l]}"), read_bytes $(mb "${RBYTES[$l]}");"
  done | paste -sd' '
  echo
  echo "Commands (run by bench/bench.sh; each wrapped in \`/usr/bin/time -v bash -c '...; read /proc/\$\$/io'\`):"
  echo
  for l in ci_first ci_unchanged ci_lock ci_onenode ci_fresh_unchanged ci_fresh_onenode skopeo_copy rwrite_first rwrite_again bah_first bah_unchanged bah_onenode openssl ci_models_cold ci_models_warm ci_models_upload; do
    echo "- $l: \`${CMD[$l]}\`"
  done
  echo
  echo "The buildah Dockerfile (nodes cloned into the context beforehand, not timed):"
  echo
  echo '```'
  head -4 "$ctx/Dockerfile"
  echo "... one COPY per node ..."
  tail -2 "$ctx/Dockerfile"
  echo '```'
} >"$sec"
cat "$sec"

{
  echo "# Benchmarks (issue 9)"
  echo
  echo "Written by \`make bench\` (bash bench/bench.sh): one section per size run; the default is"
  echo "20 nodes and 4 x 256 MB models (BENCH_NODES, BENCH_MODELS, BENCH_MODEL_MB set others)."
  echo "Times are wall clock; blobs and bytes up/pulled are counted from the docker-registry access log"
  echo "(bytes up: the stored size of each blob a completed upload named); peak RSS is /usr/bin/time -v's"
  echo "maximum resident set size, i.e. of the largest process of the run's tree (the tool, git, pip or buildah)."
  echo
  echo "How each row is measured (bench/bench.sh):"
  echo "- Everything runs against one docker-registry on 127.0.0.1. The base image (Debian bookworm minbase +"
  echo "  python3, one 70 MB layer) is first copied to base/bookworm in that registry; comfy-image and buildah"
  echo "  both start FROM it, so every pull shows in the access log."
  echo "- 1: comfy-image pushes two images (app, and app-models); buildah builds one image holding the models,"
  echo "  from a Dockerfile ordered for its layer cache: models COPY, core COPY, one COPY per node, wheels COPY,"
  echo "  venv RUN (\`python3 -m venv\` + \`pip install --no-index --find-links\` of the test wheels). The"
  echo "  nodes are cloned into the build context beforehand, untimed (comfy-image's time includes its clones)."
  echo "  buildah's time is \`bud --layers\` + \`push\`. 'One node changed': a new commit on one node's branch;"
  echo "  comfy-image runs \`lock\` (its build keeps a lock that matches the spec) then \`build\`; the ratio counts both."
  echo "- 2: the pushed images are copied to an OCI layout first (untimed), then \`skopeo copy\` pushes both to an"
  echo "  empty repository with an empty blob-info cache (a tmpfs over /var/lib/containers/cache in a private"
  echo "  mount namespace), so it uploads every blob instead of mounting."
  echo "- 2 and 5a are ratios of two timed runs on a machine shared with other agents: each pair is run"
  echo "  BENCH_REPEAT times (3 by default; ours, then the peer), each time from fresh caches into fresh"
  echo "  repositories, and the table gives the median ratio and every sample."
  echo "- 3: fresh COMFY_CACHE directories; 'pulled' is the bytes of GET .../blobs/ answered 200."
  echo "- 4: requests to /v2/ and to the destination repositories (not the reads of base/bookworm), against"
  echo "  bench/rwrite (go-containerregistry remote.Write, nothing else) pushing the same two images from the layout."
  echo "- 5: a spec with a one-file core, no nodes and the same models. Its app image is pushed first by an"
  echo "  untimed \`build --models skip\`, so the timed build makes the models image only, from a cache that has"
  echo "  never seen the models. Before it, another runner (its own cache, removed after) pushed the same models"
  echo "  image under another tag of the repository, so the registry holds the model blobs: the timed build (5a)"
  echo "  must read every model (nothing at its tags names them) and digest it, then uploads no model byte. Why:"
  echo "  the row is about making the models image (the reads and digests), which openssl's one pass bounds; a"
  echo "  push of 1 GB to this registry alone costs several such passes and is row 2's comparison (skopeo)."
  echo "  5c is the same build to an empty repository, upload included, for the record. Bytes read are rchar"
  echo "  of the whole process tree, read from /proc/<wrapper>/io after the tool and its children were reaped"
  echo "  (Linux adds a reaped child's counts to its parent's); read_bytes (from disk) is near 0 because the"
  echo "  files are in the page cache."
  echo
  for f in "$here"/results/*.md; do cat "$f"; echo; done
} >"$here/RESULTS.md"
log "wrote $here/RESULTS.md"
