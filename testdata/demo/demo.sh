#!/usr/bin/env bash
# make demo: runs comfy-image on a self-contained example. It makes its own
# git repositories (a stand-in ComfyUI core and two custom nodes), writes a
# spec pointing at them, and runs the tool on it. Nothing leaves this machine.
set -euo pipefail
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
mkrepo "$out/repos/ComfyUI-GGUF" __init__.py "NODE_CLASS_MAPPINGS = {}  # GGUF stand-in"
mkrepo "$out/repos/ComfyUI-KJNodes" __init__.py "NODE_CLASS_MAPPINGS = {}  # KJNodes stand-in"
git -C "$out/repos/ComfyUI-GGUF" tag -f -a v0.1 -m "release 0.1" >/dev/null

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
