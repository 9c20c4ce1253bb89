#!/usr/bin/env bash
# make demo: runs comfy-image on a self-contained example. It makes its own
# git repositories (a stand-in ComfyUI core and two custom nodes), writes a
# spec pointing at them, and runs the tool on it. Nothing leaves this machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-bin/comfy-image}")
out=$(realpath -m "${DEMO_OUT:-demo-out}")
export COMFY_CACHE="$out/cache"
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.invalid
export GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.invalid

mkrepo() { # mkrepo DIR FILE CONTENT
  if [ ! -d "$1/.git" ]; then
    git init -q -b master "$1"
    mkdir -p "$(dirname "$1/$2")"
    printf '%s\n' "$3" >"$1/$2"
    git -C "$1" add -A && git -C "$1" commit -q -m "initial"
  fi
}
mkrepo "$out/repos/ComfyUI" main.py "print('ComfyUI stand-in')"
if [ ! -f "$out/repos/ComfyUI/requirements.txt" ]; then
  echo "demo-requests" >"$out/repos/ComfyUI/requirements.txt"
  git -C "$out/repos/ComfyUI" add -A && git -C "$out/repos/ComfyUI" commit -q -m "requirements"
fi
mkrepo "$out/repos/ComfyUI-GGUF" __init__.py "NODE_CLASS_MAPPINGS = {}  # GGUF stand-in"
mkrepo "$out/repos/ComfyUI-KJNodes" __init__.py "NODE_CLASS_MAPPINGS = {}  # KJNodes stand-in"
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
[ -f "$out/weights/demo_vae.safetensors" ] || head -c 3000000 /dev/urandom >"$out/weights/demo_vae.safetensors"

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
    {"source": "file://$out/weights/demo_vae.safetensors", "name": "demo-vae", "target_subdir": "vae"}
  ],
  "env": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
}
JSON

cd "$out"
echo "== comfy-image lock --version-id demo --dry-run"
"$bin" lock --version-id demo --dry-run
echo "== comfy-image lock --version-id demo"
"$bin" lock --version-id demo
echo "== the lock"
cat "$COMFY_CACHE/resolved/demo.lock.json"

echo "== comfy-image realize --version-id demo --target $out/target --wheels-dir $out/wheels"
"$bin" realize --version-id demo --target "$out/target" --wheels-dir "$out/wheels"
echo "== the target"
(cd "$out/target" && find . -maxdepth 3 -not -path './.venv/*' -not -path './.comfy-image*' | sort | sed 's/^/  /')
ls -l "$out/target/ComfyUI/custom_nodes"
echo "== extra_model_paths.yaml (head)"
head -12 "$out/target/extra_model_paths.yaml"
echo "== rerun (a no-op)"
time "$bin" realize --version-id demo --target "$out/target" --wheels-dir "$out/wheels"

# Images: the same version as an app image plus a models image, written to an
# OCI layout (and pushed when DEMO_REGISTRY=host:port names a registry).
base=${DEMO_BASE:-}
if [ -z "$base" ]; then
  if layout=$(bash "$here/../base-image.sh" 2>"$out/base-image.log"); then
    base="oci:$layout:bookworm"
  else
    echo "== no base image: skipping build (needs root, debootstrap, podman and skopeo;"
    echo "   or set DEMO_BASE to a registry ref, oci:DIR:TAG or tar:FILE with python3). See $out/base-image.log"
    exit 0
  fi
fi
push=()
[ -n "${DEMO_REGISTRY:-}" ] && push=(--push "$DEMO_REGISTRY/comfy/demo:latest")
echo "== comfy-image build --version-id demo --base $base --output oci:$out/image:demo ${push[*]}"
"$bin" build --version-id demo --base "$base" --wheels-dir "$out/wheels" --output "oci:$out/image:demo" "${push[@]}"
echo "== comfy-image inspect oci:$out/image:demo"
"$bin" inspect "oci:$out/image:demo"
echo "== comfy-image inspect oci:$out/image:demo-models"
"$bin" inspect "oci:$out/image:demo-models"
