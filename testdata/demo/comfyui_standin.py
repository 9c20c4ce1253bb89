"""The demo's stand-in for ComfyUI's main.py (standard library only).

Like ComfyUI it reads the models folders from --extra-model-paths-config
(base_path plus one folder per line under each key), says which model files
it found, and serves the part of ComfyUI's HTTP API a RunPod worker uses:
POST /prompt, GET /history/<id>, GET /view, GET /object_info/<class>,
GET /models[/<folder>], POST /upload/image. It knows two nodes: VAELoader,
which reads the named file of the vae folder (refused like ComfyUI does when
it is not there), and SaveImage, which saves a small PNG whose colours and
"model_sha256" text come from the model it read: the job's result shows
which model file the container used.
"""
import hashlib
import http.server
import json
import os
import struct
import sys
import threading
import zlib

ARGS = sys.argv[1:]


def option(name, default):
    return ARGS[ARGS.index(name) + 1] if name in ARGS else default


def model_folders(conf):
    """folder name -> list of paths, from an extra_model_paths.yaml."""
    folders, base, key = {}, "", None
    if not conf:
        return folders
    for line in open(conf):
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("    ") and key:
            folders.setdefault(key, []).append(os.path.join(base, line.strip()))
        elif line.startswith("  "):
            k, _, v = line.strip().partition(":")
            key, v = None, v.strip()
            if k == "base_path":
                base = v[1:-1].replace("''", "'") if v.startswith("'") else v
            elif v == "|":
                key = k
    return folders


FOLDERS = model_folders(option("--extra-model-paths-config", None))


def listed(folder):
    files = {}
    for d in FOLDERS.get(folder, []):
        for root, _, names in os.walk(d, followlinks=True):
            for n in names:
                files.setdefault(os.path.relpath(os.path.join(root, n), d), os.path.join(root, n))
    return files


print("ComfyUI stand-in starting, args:", " ".join(ARGS), flush=True)
for folder in sorted(FOLDERS):
    for name, path in sorted(listed(folder).items()):
        print("ComfyUI stand-in found model: %s/%s (%d bytes)" % (folder, name, os.path.getsize(path)), flush=True)


def png(seed, text):
    """A 32x32 PNG coloured by seed, with a tEXt chunk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b""
    for y in range(32):
        raw += b"\x00" + b"".join(bytes(((seed[0] + x * 8) % 256, (seed[1] + y * 8) % 256, seed[2])) for x in range(32))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", text.encode()) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


HISTORY, OUTPUTS, LOCK = {}, {}, threading.Lock()


def run(prompt):
    """Validates and runs a prompt; returns (node_errors, outputs)."""
    errors, vae = {}, {}
    for nid, node in prompt.items():
        if node.get("class_type") == "VAELoader":
            name = (node.get("inputs") or {}).get("vae_name")
            files = listed("vae")
            if name not in files:
                errors[nid] = {"class_type": "VAELoader", "errors": [{
                    "type": "value_not_in_list", "message": "Value not in list",
                    "details": "vae_name: '%s' not in %s" % (name, sorted(files)),
                    "extra_info": {"input_name": "vae_name"}}]}
                continue
            with open(files[name], "rb") as f:
                vae[nid] = (name, hashlib.sha256(f.read()).hexdigest())
    if errors:
        return errors, None
    outputs = {}
    for nid, node in prompt.items():
        if node.get("class_type") != "SaveImage":
            continue
        inputs = node.get("inputs") or {}
        source = inputs.get("images")
        name, sha = vae.get(source[0] if isinstance(source, list) else None, ("none", "0" * 64))
        with LOCK:
            fname = "%s_%05d_.png" % (inputs.get("filename_prefix", "ComfyUI"), len(OUTPUTS) + 1)
            OUTPUTS[fname] = png(bytes.fromhex(sha[:6]), "model_sha256\x00%s %s" % (sha, name))
        outputs[nid] = {"images": [{"filename": fname, "subfolder": "", "type": "output"}]}
    return {}, outputs


class API(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body, ctype="application/json"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/":
            return self.reply(200, b"ComfyUI stand-in", "text/html")
        if path.startswith("/history/"):
            pid = path[len("/history/"):]
            return self.reply(200, {pid: HISTORY[pid]} if pid in HISTORY else {})
        if path == "/view":
            params = dict(p.partition("=")[::2] for p in query.split("&"))
            data = OUTPUTS.get(params.get("filename", ""))
            return self.reply(200, data, "image/png") if data else self.reply(404, {"error": "no such file"})
        if path.startswith("/object_info/"):
            if path.endswith("/VAELoader"):
                return self.reply(200, {"VAELoader": {"input": {"required": {"vae_name": [sorted(listed("vae"))]}}}})
            return self.reply(200, {})
        if path == "/models":
            return self.reply(200, sorted(FOLDERS))
        if path.startswith("/models/"):
            return self.reply(200, sorted(listed(path[len("/models/"):])))
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/upload/image":
            return self.reply(200, {"name": "upload", "subfolder": "", "type": "input"})
        if self.path != "/prompt":
            return self.reply(404, {"error": "not found"})
        prompt = json.loads(body)["prompt"]
        errors, outputs = run(prompt)
        if errors:
            return self.reply(400, {"error": {"type": "prompt_outputs_failed_validation",
                                              "message": "Prompt outputs failed validation"}, "node_errors": errors})
        with LOCK:
            pid = "demo-%d" % (len(HISTORY) + 1)
            HISTORY[pid] = {"outputs": outputs, "status": {"status_str": "success", "completed": True, "messages": []}}
        print("ComfyUI stand-in ran prompt %s" % pid, flush=True)
        self.reply(200, {"prompt_id": pid, "number": len(HISTORY), "node_errors": {}})


host = option("--listen", "127.0.0.1").split(",")[0]
print("ComfyUI stand-in serving its API on %s:%s" % (host, option("--port", "8188")), flush=True)
http.server.ThreadingHTTPServer((host, int(option("--port", "8188"))), API).serve_forever()
