#!/bin/sh
# comfy-image entry point: the version's environment, then the worker, which
# starts ComfyUI (arguments are ComfyUI's own) and, on RunPod, takes jobs.
root=$(cd "$(dirname "$0")" && pwd)
[ -f "$root/comfy.env" ] && . "$root/comfy.env"
exec "$root/.venv/bin/python" -u "$root/worker.py" "$@"
