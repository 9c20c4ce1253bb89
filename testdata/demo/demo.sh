#!/usr/bin/env bash
# make demo: the whole story on a Debian 12 machine, nothing before it.
#  1. installs the system packages it needs (only the missing ones)
#  2. builds comfy-image (Go 1.26+ must be installed: /usr/local/go/bin)
#  3. makes a Debian + python3 base image once (debootstrap, packed by
#     `comfy-image base`; cached in /var/tmp/comfy-image-base)
#  4. makes a self-contained example: git repositories of a stand-in ComfyUI
#     and two custom nodes, a folder of wheels, a model file, and a spec;
#     locks and realizes it on disk
#  5. builds the app image and the models image into an OCI layout
#  6. runs the app image in podman with the models image mounted at /models
#     and shows the stand-in ComfyUI finding its model
#  7. sends one RunPod /runsync job to it (SERVE_API_LOCALLY=true) and
#     prints the result
# Any step that cannot run stops the demo with a non-zero exit and why.
# Settings: DEMO_OUT (default demo-out), DEMO_BASE (an existing base image,
# skips step 3), DEMO_BASE_CACHE (default /var/tmp/comfy-image-base),
# DEMO_PORT (host port of the RunPod API, default 8000 or a free one),
# DEMO_IMAGE (podman's name of the images, default localhost/comfy-image-demo),
# COMFY_IMAGE (a comfy-image binary to use instead of building one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "${DEMO_OUT:-demo-out}")
started=$SECONDS

step() { printf '\n== %s\n' "$*"; }
fail() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc = 0 ] || echo "demo: stopped (exit $rc); what it made so far is in $out" >&2' EXIT

# ---------------------------------------------------------------- 1. packages
# git: the example's repositories; python3-venv and python3-pip: realize's
# venv and build's wheel fetch; debootstrap: the base's root filesystem;
# podman with runc, netavark and iptables: running the image with a port.
step "1/7 system packages"
packages=(git python3 python3-venv python3-pip debootstrap podman runc netavark iptables)
missing=()
for p in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} = 0 ]; then
  echo "all installed: ${packages[*]}"
else
  [ "$(id -u)" = 0 ] || fail "missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})"
  echo "installing with apt-get (--no-install-recommends): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed: is the Debian mirror reachable?"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    fail "apt-get install ${missing[*]} failed"
fi
[ "$(id -u)" = 0 ] || fail "the demo runs as root (debootstrap makes the base; podman runs the image as root)"

# ------------------------------------------------------------------ 2. build
step "2/7 build comfy-image"
if [ -n "${COMFY_IMAGE:-}" ]; then
  bin=$COMFY_IMAGE
  echo "given: $bin"
else
  export PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || fail "Go is not installed: put Go 1.26 or newer in /usr/local/go (https://go.dev/dl)"
  bin=$repo/bin/comfy-image
  (cd "$repo" && go build -o "$bin" ./cmd/comfy-image) || fail "go build failed"
fi
"$bin" version

# ------------------------------------------------------------------- 3. base
step "3/7 the base image (Debian bookworm + python3)"
if [ -n "${DEMO_BASE:-}" ]; then
  base=$DEMO_BASE
  echo "given: $base"
else
  cache=${DEMO_BASE_CACHE:-/var/tmp/comfy-image-base}
  if [ -f "$cache/oci/index.json" ]; then
    echo "cached: $cache/oci (remove it to make it again)"
  else
    echo "not cached yet: making it once with debootstrap (a few minutes), then comfy-image base packs it"
  fi
  layout=$(COMFY_IMAGE=$bin bash "$repo/testdata/base-image.sh" "$cache") || fail "could not make the base image (see above)"
  base="oci:$layout:bookworm"
fi
echo "base: $base"

# --------------------------------------------------------------- 4. example
step "4/7 the example: repositories, wheels, a model, a spec; lock and realize"
export COMFY_CACHE="$out/cache"
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.invalid
export GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.invalid
commit() { # commit REPO FILE CONTENT: the file as given, committed if it changed
  mkdir -p "$1"
  [ -d "$1/.git" ] || git init -q -b master "$1"
  mkdir -p "$(dirname "$1/$2")"
  printf '%s\n' "$3" >"$1/$2"
  git -C "$1" add -A
  git -C "$1" diff --cached --quiet || git -C "$1" commit -q -m "$2"
}
commit "$out/repos/ComfyUI" main.py "$(cat "$here/comfyui_standin.py")"
commit "$out/repos/ComfyUI" requirements.txt "demo-requests"
commit "$out/repos/ComfyUI-GGUF" __init__.py "NODE_CLASS_MAPPINGS = {}  # GGUF stand-in"
commit "$out/repos/ComfyUI-KJNodes" __init__.py "NODE_CLASS_MAPPINGS = {}  # KJNodes stand-in"
git -C "$out/repos/ComfyUI-GGUF" tag -f -a v0.1 -m "release 0.1" >/dev/null

# A folder of wheels (no package index is needed) and a local model file.
mkdir -p "$out/wheels" "$out/weights"
python3 - "$out/wheels" <<'PY'
import base64, hashlib, sys, zipfile
name, version = "demo_requests", "1.0"
files = {
    f"{name}/__init__.py": "VERSION = '1.0'\n",
    f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: demo-requests\nVersion: {version}\n",
    f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: demo\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = "".join(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b'=').decode()},{len(c)}\n" for p, c in files.items())
files[f"{name}-{version}.dist-info/RECORD"] = record + f"{name}-{version}.dist-info/RECORD,,\n"
with zipfile.ZipFile(f"{sys.argv[1]}/{name}-{version}-py3-none-any.whl", "w") as z:
    for p, c in files.items():
        z.writestr(zipfile.ZipInfo(p, (2020, 1, 1, 0, 0, 0)), c)
PY
model=$out/weights/demo_vae.safetensors
[ -f "$model" ] || head -c 3000000 /dev/urandom >"$model"

mkdir -p "$out/versions"
cat >"$out/versions/demo.json" <<JSON
{
  "schema_version": 2,
  "version_id": "demo",
  "comfy": {"repo": "file://$out/repos/ComfyUI", "ref": "master"},
  "custom_nodes": [
    {"repo": "file://$out/repos/ComfyUI-GGUF", "name": "gguf", "ref": "v0.1"},
    {"repo": "file://$out/repos/ComfyUI-KJNodes"}
  ],
  "models": [
    {"source": "file://$model", "name": "demo-vae", "target_subdir": "vae"}
  ],
  "env": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
}
JSON
echo "spec: $out/versions/demo.json"
cd "$out"
echo "-- comfy-image lock --version-id demo"
"$bin" lock --version-id demo || fail "lock failed"
echo "-- comfy-image realize --version-id demo --target $out/target --wheels-dir $out/wheels"
"$bin" realize --version-id demo --target "$out/target" --wheels-dir "$out/wheels" || fail "realize failed"
(cd "$out/target" && find . -maxdepth 3 -not -path './.venv/*' -not -path './.comfy-image*' | sort | sed 's/^/  /')

# ----------------------------------------------------------------- 5. images
step "5/7 build the app image and the models image"
echo "-- comfy-image build --version-id demo --base $base --wheels-dir $out/wheels --output oci:$out/image:demo"
"$bin" build --version-id demo --base "$base" --wheels-dir "$out/wheels" --output "oci:$out/image:demo" ||
  fail "build failed"
echo "-- comfy-image inspect oci:$out/image:demo"
"$bin" inspect "oci:$out/image:demo" || fail "inspect failed"

# -------------------------------------------------------------------- 6. run
step "6/7 run the app image in podman, the models image mounted at /models"
app=${DEMO_IMAGE:-localhost/comfy-image-demo}:demo
models=${DEMO_IMAGE:-localhost/comfy-image-demo}:demo-models
load() { # load TAG REF: the layout's image into podman's storage as REF
  local id
  # podman names what it pulls from a layout after the layout's path, which
  # must then be a valid (lower-case) name: pull by the relative path.
  id=$(cd "$out" && podman pull -q "oci:image:$1" 2>"$out/podman-pull.log") ||
    { cat "$out/podman-pull.log" >&2; fail "podman pull oci:$out/image:$1 failed"; }
  podman tag "$id" "$2"
  podman untag "$id" localhost/image:latest 2>/dev/null || true
  echo "loaded oci:$out/image:$1 as $2 (${id:0:12})"
}
load demo "$app"
load demo-models "$models"
port=${DEMO_PORT:-$(python3 -c '
import socket
for p in (8000, 0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(s.getsockname()[1]); break
    except OSError:
        pass
    finally:
        s.close()')}
name=comfy-image-demo-$$
# runc and cgroupfs, and explicit ulimits: what podman needs on machines
# like these (README, "podman").
run=(podman --runtime runc --cgroup-manager=cgroupfs run -d --rm --name "$name"
  --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
  --mount "type=image,source=$models,destination=/models"
  -e SERVE_API_LOCALLY=true -p "127.0.0.1:$port:8000" "$app")
echo "-- ${run[*]}"
"${run[@]}" >/dev/null 2>"$out/podman-run.log" || { cat "$out/podman-run.log" >&2; fail "podman run failed"; }
trap 'rc=$?; podman rm -f "$name" >/dev/null 2>&1 || true; [ $rc = 0 ] || echo "demo: stopped (exit $rc); what it made so far is in $out" >&2' EXIT
# (The log is read into a variable: `podman logs | grep -q` fails under
# pipefail when grep stops reading early.)
for i in $(seq 1 120); do
  logs=$(podman logs "$name" 2>&1 || true)
  [[ $logs == *"serving its API"* ]] && break
  podman container exists "$name" || fail "the container exited before ComfyUI started"
  [ "$i" = 120 ] && { echo "$logs" >&2; fail "ComfyUI did not start within 60s"; }
  sleep 0.5
done
echo "$logs" | sed 's/^/  | /'
[[ $logs == *"found model: vae/demo_vae.safetensors"* ]] ||
  fail "the stand-in ComfyUI did not find vae/demo_vae.safetensors in the mounted models image"

# ----------------------------------------------------------------- 7. a job
step "7/7 one RunPod job: POST http://127.0.0.1:$port/runsync"
python3 - "http://127.0.0.1:$port" "$model" "$out/result.png" <<'PY' || fail "the /runsync job did not complete (container log above)"
import base64, hashlib, json, sys, time, urllib.request
api, model, saved = sys.argv[1:]
job = {"input": {"workflow": {
    "1": {"class_type": "VAELoader", "inputs": {"vae_name": "demo_vae.safetensors"}},
    "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "demo", "images": ["1", 0]}}}}}
print("job:", json.dumps(job))
deadline = time.time() + 60
while True:
    try:
        req = urllib.request.Request(api + "/runsync", json.dumps(job).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.load(r)
        break
    except OSError as e:  # the API is still starting
        if time.time() > deadline:
            sys.exit("no answer from %s/runsync: %s" % (api, e))
        time.sleep(0.5)
print("status:", answer.get("status"), " id:", answer.get("id"))
if answer.get("status") != "COMPLETED":
    sys.exit("the job failed: %s" % (answer.get("error") or answer))
want = hashlib.sha256(open(model, "rb").read()).hexdigest()
for img in answer["output"]["images"]:
    data = base64.b64decode(img["data"])
    text = data[data.index(b"tEXt") + 4:].split(b"\x00", 2)[1].split(b" ")[0].decode()[:64]
    print("output: %s (%s, %d bytes PNG); the model it read has sha256 %s" % (img["filename"], img["type"], len(data), text))
    if text != want:
        sys.exit("the container read a model with sha256 %s; %s has %s" % (text, model, want))
    open(saved, "wb").write(data)
print("the model the container read is %s (sha256 %s...): it came from the models image" % (model.rsplit("/", 1)[1], want[:16]))
print("saved the output as", saved)
PY

step "done in $((SECONDS - started))s. What to try next"
cat <<EOF
  - Look inside the images:   $bin inspect oci:$out/image:demo-models
  - Run it yourself:          podman --runtime runc run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \\
                                --mount type=image,source=$models,destination=/models \\
                                -e SERVE_API_LOCALLY=true -p 127.0.0.1:8000:8000 $app
    then send a job:          curl -s 127.0.0.1:8000/runsync -H 'Content-Type: application/json' \\
                                -d '{"input":{"workflow":{"1":{"class_type":"VAELoader","inputs":{"vae_name":"demo_vae.safetensors"}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0]}}}}}'
  - Check an image starts:    $bin check $app --models-image $models --run-arg=--ulimit=nofile=1024:1024 --run-arg=--ulimit=nproc=1024:1024
  - Change the example:       edit $out/versions/demo.json (or commit to $out/repos/*), then make demo again:
                              only what changed is packed again
  - Your own version:         versions/wan22-fast.json is a real one; comfy-image lock/build --version-id wan22-fast
                              --base <a CUDA + Python image> --push <your registry>/comfy:wan22-fast
  - Push to RunPod:           README, "RunPod serverless"
EOF
