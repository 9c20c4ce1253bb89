"""comfy-image worker: starts ComfyUI and, on RunPod, takes its jobs.

Standard library only, Python 3.9+: it runs on any base image without a
wheel from an index (no runpod, requests or websocket-client package).

Modes, chosen from the environment:
  RUNPOD_WEBHOOK_GET_JOB set   RunPod serverless: take a job, run it on the
                               local ComfyUI, post the result, take the next.
  SERVE_API_LOCALLY=true       RunPod's local test API on port 8000
                               (/run, /runsync, /status/<id>, /health).
  otherwise                    ComfyUI alone (exec'd: signals reach it).
Arguments are ComfyUI's own; --listen 0.0.0.0 and --port 8188 are added
unless given.
"""

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

ROOT = os.environ.get("COMFY_IMAGE_ROOT") or os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(ROOT, "comfy-image.json")
USER_AGENT = "comfy-image-worker/1"


def log(msg):
    print("comfy-image: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- arguments


def option_value(args, name):
    """The value of --name in args (both "--name v" and "--name=v"), or None
    when absent; "" when given without a value."""
    for i, a in enumerate(args):
        if a == name:
            if i + 1 < len(args) and not args[i + 1].startswith("-"):
                return args[i + 1]
            return ""
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def comfy_args(args):
    """ComfyUI's arguments: the container's, plus --listen 0.0.0.0 and
    --port 8188 unless they set them."""
    args = list(args)
    if option_value(args, "--listen") is None:
        args += ["--listen", "0.0.0.0"]
    if option_value(args, "--port") is None:
        args += ["--port", "8188"]
    return args


def port_error(args):
    """Why the container's --port cannot be ComfyUI's port, or None. Said
    here, before ComfyUI starts: its own refusal would come as a crash."""
    port = option_value(args, "--port")
    if port is None or (port.isdigit() and 1 <= int(port) <= 65535):
        return None
    return "--port: expected a port number (1-65535) for ComfyUI, e.g. --port 8188; got %s" % (repr(port) if port else "no value")


def comfy_address(args):
    """Where the worker reaches ComfyUI, following its --listen and --port."""
    listen = option_value(args, "--listen")
    port = option_value(args, "--port") or "8188"
    host = (listen or "").split(",")[0].strip()
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = "[" + host + "]"
    return "http://%s:%s" % (host, port)


# ------------------------------------------------------------------- models


def has_files(path):
    """Whether the tree at path holds a file (empty folders, such as
    ComfyUI's folder names alone, hold no model). Stops at the first."""
    for _, _, files in os.walk(path):
        if files:
            return True
    return False


def read_manifest():
    try:
        with open(MANIFEST) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"version_id": "", "models": []}


def choose_models_dir(manifest, env):
    """The models folder and why: $COMFY_MODELS_DIR, else /models when it
    holds files, else the RunPod network volume of this version."""
    if env.get("COMFY_MODELS_DIR"):
        return env["COMFY_MODELS_DIR"], "COMFY_MODELS_DIR"
    mount = env.get("COMFY_IMAGE_MODELS_MOUNT") or "/models"
    if has_files(mount):
        return mount, "models image mounted or baked"
    volume = os.path.join(runpod_volume(env), "comfy-" + manifest.get("version_id", ""), "models")
    if has_files(volume):
        return volume, "RunPod network volume"
    return mount, "no models found in %s or %s" % (mount, volume)


def runpod_volume(env):
    return env.get("RUNPOD_VOLUME_PATH") or "/runpod-volume"


def hf_cached(env, hf):
    """A file of RunPod's cached models (the Hugging Face cache layout on the
    network volume): the snapshot of the spec's revision (a branch or tag
    resolved through refs/), never another revision's file."""
    org, _, name = hf["repo"].partition("/")
    repo_dir = os.path.join(runpod_volume(env), "huggingface-cache", "hub", "models--%s--%s" % (org, name))
    snapshots = os.path.join(repo_dir, "snapshots")
    revs = []
    rev = hf.get("revision") or "main"
    try:
        with open(os.path.join(repo_dir, "refs", rev)) as f:
            revs.append(f.read().strip())
    except OSError:
        pass
    revs.append(rev)
    for r in revs:
        p = os.path.join(snapshots, r, hf["path"])
        if "/" not in r and os.path.isfile(p):
            return p
    return None


def place_models(manifest, models_dir, links_dir, env):
    """Links hf:// models found only in RunPod's cache into links_dir and
    returns the models that are nowhere."""
    missing = []
    for m in manifest.get("models", []):
        dest = m["dest"]
        if os.path.exists(os.path.join(models_dir, dest)):
            continue
        cached = hf_cached(env, m["hf"]) if m.get("hf") else None
        if cached:
            link = os.path.join(links_dir, dest)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(cached, link)
            log("model %s from RunPod's cached models %s" % (dest, cached))
            continue
        missing.append(m)
    return missing


def write_yaml(template, models_dir, links_dir, out):
    """extra_model_paths.yaml with base_path set to the chosen folder, and a
    second section for the links to RunPod's cached models."""
    with open(template) as f:
        lines = f.read().splitlines()
    body, extra = [], []
    for line in lines:
        if line.startswith("  base_path:"):
            body.append("  base_path: " + yaml_quote(models_dir))
            extra.append("  base_path: " + yaml_quote(links_dir))
        else:
            body.append(line)
            if line.startswith("  ") and not line.startswith("  is_default:"):
                extra.append(line)
    with open(out, "w") as f:
        f.write("\n".join(body) + "\n")
        if links_dir and has_files(links_dir):
            f.write("comfy_image_runpod_cache:\n" + "\n".join(extra) + "\n")


def yaml_quote(s):
    """s as a YAML scalar: plain when YAML reads it back as the same string."""
    if s and s.strip() == s and not any(c in s for c in ":#'\"{}[],&*?|<>=!%@`\n\\"):
        return s
    return "'" + s.replace("'", "''") + "'"


def point_models_link(models_dir):
    """Re-points ROOT/models, the link ComfyUI/models leads through (see
    layers/modelslayout.go), at the chosen folder: nodes that look under
    folder_paths.models_dir (IPAdapter_plus's ipadapter, insightface) then
    see every model there. Replaced atomically; a read-only root is logged."""
    link = os.path.join(ROOT, "models")
    if not os.path.islink(link) or os.readlink(link) == models_dir:
        return
    tmp = link + ".new"
    try:
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(models_dir, tmp)
        os.replace(tmp, link)
    except OSError as e:
        log("warning: cannot point %s at %s (%s); nodes reading ComfyUI/models see %s" % (link, models_dir, e, os.readlink(link)))


def prepare_models(env):
    manifest = read_manifest()
    models_dir, why = choose_models_dir(manifest, env)
    log("models from %s (%s)" % (models_dir, why))
    point_models_link(models_dir)
    tmp = env.get("TMPDIR") or "/tmp"
    links_dir = os.path.join(tmp, "comfy-image-models")
    missing = place_models(manifest, models_dir, links_dir, env)
    for m in missing:
        log("missing model %s (folder %s, from %s)" % (os.path.basename(m["dest"]), m["folder"], m["source"]))
    yaml = os.path.join(tmp, "extra_model_paths.yaml")
    write_yaml(os.path.join(ROOT, "extra_model_paths.yaml"), models_dir, links_dir, yaml)
    return yaml


# ------------------------------------------------------------------ ComfyUI


class ComfyDied(Exception):
    pass


class JobError(Exception):
    pass


class JobStopped(Exception):
    """RunPod asked to stop the job (cancelled, or past the endpoint's
    execution timeout): no result is posted, as with RunPod's SDK."""


class Comfy:
    """The local ComfyUI, over its HTTP API."""

    def __init__(self, url, proc=None, timeout=None):
        self.url = url
        self.proc = proc
        self.timeout = timeout
        self.should_stop = lambda: False  # RunPod's stop signal for the job

    def check_alive(self, grace=0):
        """Raises ComfyDied when ComfyUI has exited; grace seconds to wait
        for the exit (a crash drops the connection before the process is
        gone)."""
        if self.proc is None:
            return
        if grace:
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is not None:
            raise ComfyDied("ComfyUI exited with code %s" % self.proc.returncode)

    def request(self, path, data=None, headers=None, timeout=60):
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            self.check_alive(grace=5)
            raise JobError("ComfyUI at %s: %s" % (self.url, e))

    def json(self, path, data=None):
        status, body = self.request(path, data, {"Content-Type": "application/json"} if data else None)
        if status != 200:
            raise JobError("ComfyUI %s: HTTP %d: %s" % (path, status, body[:500].decode("utf-8", "replace")))
        return json.loads(body)

    def wait_ready(self, timeout=None):
        start = time.time()
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(self.url + "/", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if timeout is not None and time.time() - start > timeout:
                raise JobError("ComfyUI at %s did not answer within %ds" % (self.url, timeout))
            time.sleep(0.2)

    def upload(self, name, blob):
        boundary = uuid.uuid4().hex
        parts = [
            ('Content-Disposition: form-data; name="overwrite"', b"true"),
            ('Content-Disposition: form-data; name="image"; filename="%s"\r\nContent-Type: application/octet-stream'
             % "".join(c for c in name if c not in '"\r\n'), blob),
        ]
        body = b""
        for head, value in parts:
            body += b"--" + boundary.encode() + b"\r\n" + head.encode() + b"\r\n\r\n" + value + b"\r\n"
        body += b"--" + boundary.encode() + b"--\r\n"
        status, resp = self.request("/upload/image", body, {"Content-Type": "multipart/form-data; boundary=" + boundary})
        if status != 200:
            raise JobError("uploading %s: HTTP %d: %s" % (name, status, resp[:300].decode("utf-8", "replace")))

    def queue(self, workflow, client_id, api_key=None):
        payload = {"prompt": workflow, "client_id": client_id}
        if api_key:  # Comfy.org API nodes, as worker-comfyui passes it
            payload["extra_data"] = {"api_key_comfy_org": api_key}
        data = json.dumps(payload).encode()
        status, body = self.request("/prompt", data, {"Content-Type": "application/json"})
        if status == 200:
            return json.loads(body)["prompt_id"]
        try:
            answer = json.loads(body)
        except ValueError:
            raise JobError("ComfyUI refused the workflow: HTTP %d: %s" % (status, body[:500].decode("utf-8", "replace")))
        raise JobError(self.describe_refusal(answer, workflow))

    def describe_refusal(self, answer, workflow):
        """ComfyUI's validation answer as one message naming each node; a
        model that is not present comes with the files of its folder."""
        err = answer.get("error")
        msg = err.get("message", "") if isinstance(err, dict) else str(err or "")
        lines = ["Workflow validation failed: " + (msg or "ComfyUI refused the prompt")]
        if isinstance(err, dict) and err.get("details"):
            lines.append(str(err["details"]))
        for node_id, node in sorted((answer.get("node_errors") or {}).items()):
            class_type = node.get("class_type") or (workflow.get(node_id) or {}).get("class_type", "?")
            for e in node.get("errors", []):
                line = "node %s (%s): %s" % (node_id, class_type, e.get("message", ""))
                if e.get("details"):
                    line += ": " + str(e["details"])
                if e.get("type") == "value_not_in_list":
                    line += self.available(class_type, (e.get("extra_info") or {}).get("input_name"), workflow.get(node_id))
                lines.append(line)
        return "\n".join(lines)

    def available(self, class_type, input_name, node):
        if not input_name:
            return ""
        folder = MODEL_INPUTS.get(input_name)
        if folder is None:
            return ""
        value = ((node or {}).get("inputs") or {}).get(input_name)
        files = None
        try:
            info = self.json("/object_info/" + urllib.parse.quote(class_type))
            spec = info[class_type]["input"]
            for group in ("required", "optional"):
                opt = (spec.get(group) or {}).get(input_name)
                if opt and isinstance(opt[0], list):
                    files = opt[0]
        except (JobError, KeyError, ValueError, TypeError, IndexError):
            pass
        if files is None:
            try:
                files = self.json("/models/" + folder)
            except (JobError, ValueError):
                files = []
        avail = ", ".join(files) if files else "none"
        return "; model %r is not present; available in %s: %s" % (value, folder, avail)

    def wait(self, prompt_id):
        start = time.time()
        while True:
            self.check_alive()
            history = self.json("/history/" + urllib.parse.quote(prompt_id))
            entry = history.get(prompt_id)
            if entry:
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    raise JobError(execution_error(status))
                if status.get("completed", True):
                    return entry.get("outputs") or {}
            if self.should_stop():
                self.cancel(prompt_id)
                raise JobStopped()
            if self.timeout and time.time() - start > self.timeout:
                self.cancel(prompt_id)
                raise JobError("the workflow did not finish within %ds (COMFY_JOB_TIMEOUT)" % self.timeout)
            time.sleep(0.1)

    def cancel(self, prompt_id):
        """Stops a prompt the job gave up on: drops it from ComfyUI's queue
        and interrupts it if it runs, so the next job does not wait behind
        it. Best effort: the job fails either way."""
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self.request(path, json.dumps(body).encode(), {"Content-Type": "application/json"}, timeout=10)
            except JobError as e:
                log("stopping prompt %s: %s" % (prompt_id, e))

    def view(self, f):
        q = urllib.parse.urlencode({"filename": f["filename"], "subfolder": f.get("subfolder", ""), "type": f.get("type", "output")})
        status, body = self.request("/view?" + q, timeout=300)
        if status != 200:
            raise JobError("fetching %s: HTTP %d" % (f["filename"], status))
        return body


# Inputs of ComfyUI's loaders that name a model file, with their folder.
MODEL_INPUTS = {
    "ckpt_name": "checkpoints", "vae_name": "vae", "lora_name": "loras", "unet_name": "diffusion_models",
    "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
    "clip_name3": "text_encoders", "clip_name4": "text_encoders", "control_net_name": "controlnet",
    "model_name": "upscale_models", "style_model_name": "style_models", "gligen_name": "gligen",
    "embedding_name": "embeddings", "audio_encoder_name": "audio_encoders", "name": "model_patches",
}


def execution_error(status):
    for kind, data in status.get("messages") or []:
        if kind == "execution_error":
            return "Workflow execution error: node %s (%s): %s" % (
                data.get("node_id"), data.get("node_type"), data.get("exception_message", "").strip())
        if kind == "execution_interrupted":
            return "Workflow execution interrupted at node %s (%s)" % (data.get("node_id"), data.get("node_type"))
    return "Workflow execution failed"


# ------------------------------------------------------------------------ S3


def s3_config(env):
    keys = ("BUCKET_ENDPOINT_URL", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY")
    if all(env.get(k) for k in keys):
        return {k: env[k] for k in keys + ("BUCKET_NAME", "BUCKET_REGION") if env.get(k)}
    return None


def s3_region(endpoint):
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    if ".s3." in "." + host:
        return ("." + host).split(".s3.")[1].split(".")[0]
    if host.endswith(".digitaloceanspaces.com"):
        return host.split(".")[-3]
    return "us-east-1"


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4(method, url, headers, payload_hash, access, secret, region, now, query=None):
    """AWS Signature Version 4 for service s3: the Authorization value (or,
    with query, the signature of a presigned URL)."""
    u = urllib.parse.urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = "%s/%s/s3/aws4_request" % (now.strftime("%Y%m%d"), region)
    lower = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    names = sorted(lower)
    canonical_headers = "".join("%s:%s\n" % (k, lower[k]) for k in names)
    signed = ";".join(names)
    canonical_query = query_string(query or {})
    # S3 signs the path as sent (already escaped), without escaping it again.
    canonical = "\n".join([method, u.path or "/", canonical_query,
                           canonical_headers, signed, payload_hash])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _sign(("AWS4" + secret).encode(), now.strftime("%Y%m%d"))
    for part in (region, "s3", "aws4_request"):
        k = _sign(k, part)
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return scope, signed, signature


def query_string(query):
    """A query string in SigV4's canonical form (sorted, RFC 3986 escapes)."""
    q = sorted(query.items())
    return "&".join("%s=%s" % (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in q)


def s3_put(cfg, key, data, content_type, now=None):
    """PUTs data at key (path-style URL: endpoint/bucket/key) and returns a
    presigned GET URL valid for 7 days, as RunPod's rp_upload does."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    endpoint = cfg["BUCKET_ENDPOINT_URL"].rstrip("/")
    bucket = cfg.get("BUCKET_NAME") or now.strftime("%m-%y")
    region = cfg.get("BUCKET_REGION") or s3_region(endpoint)
    access, secret = cfg["BUCKET_ACCESS_KEY_ID"], cfg["BUCKET_SECRET_ACCESS_KEY"]
    url = "%s/%s/%s" % (endpoint, bucket, urllib.parse.quote(key, safe="/-_.~"))
    host = urllib.parse.urlsplit(url).netloc
    payload_hash = hashlib.sha256(data).hexdigest()
    headers = {"Host": host, "Content-Type": content_type, "X-Amz-Content-Sha256": payload_hash,
               "X-Amz-Date": now.strftime("%Y%m%dT%H%M%SZ")}
    scope, signed, sig = sigv4("PUT", url, headers, payload_hash, access, secret, region, now)
    headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (access, scope, signed, sig)
    del headers["Host"]
    req = urllib.request.Request(url, data=data, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
    except urllib.error.HTTPError as e:
        raise JobError("S3 PUT %s: HTTP %d: %s" % (url, e.code, e.read()[:300].decode("utf-8", "replace")))
    except (urllib.error.URLError, OSError) as e:
        raise JobError("S3 PUT %s: %s" % (url, e))
    query = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": "%s/%s/%s/s3/aws4_request" % (access, now.strftime("%Y%m%d"), region),
             "X-Amz-Date": now.strftime("%Y%m%dT%H%M%SZ"), "X-Amz-Expires": "604800", "X-Amz-SignedHeaders": "host"}
    _, _, sig = sigv4("GET", url, {"Host": host}, "UNSIGNED-PAYLOAD", access, secret, region, now, query)
    query["X-Amz-Signature"] = sig
    return url + "?" + query_string(query)


CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                 ".gif": "image/gif", ".mp4": "video/mp4", ".webm": "video/webm", ".wav": "audio/wav",
                 ".mp3": "audio/mpeg", ".flac": "audio/flac"}


# ---------------------------------------------------------------------- jobs


def decode_image(data):
    if not isinstance(data, str):
        raise JobError("image is not base64: expected a string, got %s" % type(data).__name__)
    if "," in data and data.startswith("data:"):
        data = data.split(",", 1)[1]
    # Line breaks and spaces of wrapped base64 (the base64 command, MIME
    # encoders) are not data; worker-comfyui accepts them too.
    data = "".join(data.split())
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as e:
        raise JobError("image is not base64: %s" % e)


def key_segment(s):
    """s as one segment of an S3 key or an output's name: "/", "\\" and
    control characters become "_", and "." or ".." cannot stand alone. A
    changed s is prefixed with a hash of the original, so "a/b" and "a_b"
    stay two segments and the extension stays last."""
    s = str(s)
    safe = "".join("_" if c in "/\\" or ord(c) < 32 or ord(c) == 127 else c for c in s)
    if safe == s and safe not in ("", ".", ".."):
        return s
    return hashlib.sha256(s.encode()).hexdigest()[:12] + "-" + safe


def output_name(f):
    """An output's name in the answer and under the job's S3 prefix:
    ComfyUI's subfolder/filename, each part a safe segment, so outputs of
    one name in two subfolders stay apart and none climbs out."""
    parts = [p for p in str(f.get("subfolder") or "").replace("\\", "/").split("/") if p]
    return "/".join(key_segment(p) for p in parts + [f["filename"]])


def output_files(outputs):
    """Every file the history lists: images, gifs, videos (VideoHelperSuite)
    and any other list of saved files, temp previews left out."""
    for node_id in sorted(outputs):
        for kind, items in sorted(outputs[node_id].items()):
            if not isinstance(items, list):
                continue
            for f in items:
                if isinstance(f, dict) and f.get("filename") and f.get("type") != "temp":
                    yield node_id, f


def run_job(comfy, job, env):
    """Runs one worker-comfyui job; returns its output dict, errors raised."""
    inp = job.get("input")
    if isinstance(inp, str):
        try:
            inp = json.loads(inp)
        except ValueError:
            raise JobError("Invalid JSON format in input")
    if not isinstance(inp, dict):
        raise JobError("Please provide input")
    workflow = inp.get("workflow")
    if workflow is None:
        raise JobError("Missing 'workflow' parameter")
    if not isinstance(workflow, dict):
        raise JobError("'workflow' must be an object (ComfyUI's API format: node id to node), got %s" % json_kind(workflow))
    images = inp.get("images") or []
    if not isinstance(images, list) or not all(isinstance(i, dict) and "name" in i and "image" in i for i in images):
        raise JobError("'images' must be a list of objects with 'name' and 'image' keys")
    comfy.wait_ready()
    for img in images:
        comfy.upload(img["name"], decode_image(img["image"]))
    prompt_id = comfy.queue(workflow, str(uuid.uuid4()), inp.get("comfy_org_api_key") or env.get("COMFY_ORG_API_KEY"))
    outputs = comfy.wait(prompt_id)
    s3 = s3_config(env)
    files = []
    for _, f in output_files(outputs):
        data = comfy.view(f)
        name = output_name(f)
        if s3:
            ext = os.path.splitext(name)[1].lower()
            url = s3_put(s3, "%s/%s" % (key_segment(job["id"]), name), data, CONTENT_TYPES.get(ext, "application/octet-stream"))
            files.append({"filename": name, "type": "s3_url", "data": url})
        else:
            files.append({"filename": name, "type": "base64", "data": base64.b64encode(data).decode()})
    result = {"images": files}
    if not files:
        result["status"] = "success_no_images"
    return result


def json_kind(v):
    """What a JSON value is, in JSON's words."""
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(v), "null")


def job_result(comfy, job, env):
    """RunPod's result body for a job: {"output": ...} or {"error": ...}."""
    try:
        out = {"output": run_job(comfy, job, env)}
    except (ComfyDied, JobStopped):
        raise
    except JobError as e:
        out = {"error": str(e)}
    except Exception as e:  # a bug or an answer of an unexpected shape: fail the job, keep the worker
        out = {"error": "%s: %s" % (type(e).__name__, e)}
    if env.get("REFRESH_WORKER", "").lower() == "true":
        out["stopPod"] = True
    return out


# -------------------------------------------------------------- RunPod loop


class RunPod:
    """RunPod's serverless job API, as its SDK speaks it."""

    def __init__(self, env):
        self.env = env
        self.worker_id = env.get("RUNPOD_POD_ID") or str(uuid.uuid4())
        self.headers = {"Authorization": env.get("RUNPOD_AI_API_KEY", ""), "User-Agent": USER_AGENT,
                        "Content-Type": "application/json"}
        self.current = None
        self.stopped = set()  # ids RunPod asked to stop (only the current job's)

    def _url(self, name, job_id=""):
        url = self.env.get(name, "").replace("$RUNPOD_POD_ID", self.worker_id).replace("$ID", job_id or self.worker_id)
        return url

    def take(self):
        url = self._url("RUNPOD_WEBHOOK_GET_JOB")
        url += ("&" if "?" in url else "?") + "job_in_progress=" + ("1" if self.current else "0")
        req = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=90) as r:
                if r.status == 204:
                    return []
                body = r.read()
        except urllib.error.HTTPError as e:
            if e.code in (204, 400):
                return []
            if e.code == 429:
                time.sleep(5)
                return []
            raise
        if not body.strip():
            return []
        jobs = json.loads(body)
        if isinstance(jobs, dict):
            if "id" not in jobs or "input" not in jobs:
                raise ValueError("job without id or input: %s" % body[:200])
            return [jobs]
        if not isinstance(jobs, list):
            return []
        # An element without an id can have no result posted: it is
        # logged and skipped, the others run.
        valid = []
        for job in jobs:
            if isinstance(job, dict) and isinstance(job.get("id"), str) and job["id"]:
                valid.append(job)
            else:
                log("job-take answered an element without an id; skipped: %s" % json.dumps(job)[:200])
        return valid

    def post(self, job, result):
        url = self._url("RUNPOD_WEBHOOK_POST_OUTPUT", job["id"])
        url += ("&" if "?" in url else "?") + "isStream=false"
        headers = dict(self.headers)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["X-Request-ID"] = job["id"]
        data = json.dumps(result, ensure_ascii=False).encode()
        for attempt in range(3):
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=120) as r:
                    r.read()
                return
            except (urllib.error.URLError, OSError) as e:
                log("posting the result of job %s (attempt %d): %s" % (job["id"], attempt + 1, e))
                time.sleep(1 + attempt)

    def stop_loop(self, stop):
        """RunPod's stop channel, as the SDK polls it: job-stop beside
        job-take answers {"jobsToStop": [ids]} when a job is cancelled or
        timed out; the current job among them is stopped."""
        url = self._url("RUNPOD_WEBHOOK_GET_JOB")
        if "/job-take/" not in url:
            return
        url = url.replace("/job-take/", "/job-stop/")
        while not stop.is_set():
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=self.headers), timeout=90) as r:
                    body = r.read() if r.status != 204 else b""
            except urllib.error.HTTPError as e:
                stop.wait(5 if e.code == 429 else 1)
                continue
            except (urllib.error.URLError, OSError):
                stop.wait(1)
                continue
            try:
                payload = json.loads(body) if body.strip() else {}
            except ValueError:
                payload = {}
            ids = payload.get("jobsToStop") if isinstance(payload, dict) else None
            ids = [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
            current = self.current
            if current and current in ids:
                log("job %s: RunPod asked to stop it" % current)
                self.stopped.add(current)
            if not ids:
                stop.wait(1)

    def ping_loop(self, stop):
        url = self._url("RUNPOD_WEBHOOK_PING")
        if not url:
            return
        interval = int(self.env.get("RUNPOD_PING_INTERVAL") or 10000) / 1000.0
        while not stop.is_set():
            q = {"runpod_version": USER_AGENT}
            if self.current:
                q["job_id"] = self.current
            full = url + ("&" if "?" in url else "?") + urllib.parse.urlencode(q)
            try:
                req = urllib.request.Request(full, headers=self.headers)
                with urllib.request.urlopen(req, timeout=max(interval * 2, 5)) as r:
                    r.read()
            except (urllib.error.URLError, OSError) as e:
                log("heartbeat: %s" % e)
            stop.wait(interval)


def serve_runpod(comfy, env, stop):
    rp = RunPod(env)
    log("RunPod serverless worker %s" % rp.worker_id)
    threading.Thread(target=rp.ping_loop, args=(stop,), daemon=True).start()
    threading.Thread(target=rp.stop_loop, args=(stop,), daemon=True).start()
    comfy.should_stop = lambda: rp.current in rp.stopped
    comfy.wait_ready()
    log("ComfyUI is ready at %s; taking jobs" % comfy.url)
    while not stop.is_set():
        comfy.check_alive()
        try:
            jobs = rp.take()
        except (urllib.error.URLError, OSError, ValueError) as e:
            log("taking a job: %s" % e)
            stop.wait(1)
            continue
        if not jobs:
            stop.wait(0.2)
            continue
        for job in jobs:
            rp.current = job["id"]
            log("job %s started" % job["id"])
            try:
                result = job_result(comfy, job, env)
            except ComfyDied as e:
                rp.post(job, {"error": "ComfyUI died during the job: %s" % e})
                raise
            except JobStopped:
                log("job %s stopped; its prompt was dropped and interrupted" % job["id"])
                rp.stopped.discard(job["id"])
                rp.current = None
                continue
            rp.post(job, result)
            log("job %s %s" % (job["id"], "failed" if "error" in result else "done"))
            rp.current = None


# ----------------------------------------------------- RunPod's local test API


# The local API's bound on a request body (it is read into memory): room
# for a job with its input images in base64, not for any size a client
# announces.
MAX_REQUEST_BODY = 64 << 20


class LocalAPI:
    """RunPod's local test API: /run, /runsync, /status/<id>, /health. One
    job runs at a time."""

    def __init__(self, comfy, env):
        self.comfy, self.env = comfy, env
        self.lock = threading.Lock()  # one job at a time
        self.state = threading.Lock()  # jobs and counts
        self.jobs = {}
        self.counts = {"completed": 0, "failed": 0, "in_progress": 0, "in_queue": 0}
        self.died = None

    def count(self, **deltas):
        with self.state:
            for k, d in deltas.items():
                self.counts[k] += d

    def run(self, job):
        with self.lock:
            self.count(in_queue=-1, in_progress=1)
            try:
                result = job_result(self.comfy, job, self.env)
            except ComfyDied as e:
                self.died = e
                result = {"error": "ComfyUI died during the job: %s" % e}
        if "error" in result:
            self.count(in_progress=-1, failed=1)
            answer = {"id": job["id"], "status": "FAILED", "error": result["error"]}
        else:
            self.count(in_progress=-1, completed=1)
            answer = {"id": job["id"], "status": "COMPLETED", "output": result.get("output")}
        with self.state:
            self.jobs[job["id"]] = answer
        return answer

    def handler(self):
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                log("local API: " + fmt % args)

            def reply(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/health":
                    with api.state:
                        counts = dict(api.counts)
                    busy = counts["in_progress"] > 0
                    return self.reply(200, {"jobs": counts, "workers": {"idle": 0 if busy else 1, "running": 1 if busy else 0}})
                if self.path.startswith("/status/"):
                    job_id = urllib.parse.unquote(self.path[len("/status/"):])
                    with api.state:
                        ans = api.jobs.get(job_id)
                    if ans is None:
                        return self.reply(404, {"id": job_id, "status": "FAILED", "error": "Job ID not found"})
                    return self.reply(200, ans)
                self.reply(404, {"error": "not found"})

            def do_POST(self):
                if self.path not in ("/run", "/runsync"):
                    return self.reply(404, {"error": "not found"})
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    return self.reply(400, {"error": "Content-Length is not a number"})
                if n > MAX_REQUEST_BODY:
                    # Refused unread; the connection closes, as the
                    # body it announced is not taken.
                    self.close_connection = True
                    return self.reply(413, {"error": "the body is %d bytes; the local API takes at most %d MiB" % (n, MAX_REQUEST_BODY >> 20)})
                try:
                    req = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    return self.reply(400, {"error": "the body is not JSON"})
                if not isinstance(req, dict) or "input" not in req:
                    return self.reply(400, {"error": "expected {\"input\": {...}}"})
                job = {"id": req.get("id") or "test-" + str(uuid.uuid4()), "input": req["input"]}
                api.count(in_queue=1)
                if self.path == "/runsync":
                    return self.reply(200, api.run(job))
                with api.state:
                    api.jobs[job["id"]] = {"id": job["id"], "status": "IN_PROGRESS"}
                threading.Thread(target=api.run, args=(job,), daemon=True).start()
                self.reply(200, {"id": job["id"], "status": "IN_PROGRESS"})

        return Handler


def serve_local(comfy, env, stop):
    api = LocalAPI(comfy, env)
    host = env.get("RUNPOD_API_HOST") or "0.0.0.0"
    port = int(env.get("RUNPOD_API_PORT") or 8000)
    server = http.server.ThreadingHTTPServer((host, port), api.handler())
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("RunPod local test API on http://%s:%d (/run, /runsync, /status/<id>, /health)" % (host, port))
    while not stop.wait(0.5):
        if api.died:
            raise api.died
        comfy.check_alive()
    server.shutdown()


# ---------------------------------------------------------------------- main


# The worker's secrets: ComfyUI and its custom nodes (code from outside)
# run without them. (The Comfy.org key reaches ComfyUI with each prompt.)
WORKER_SECRETS = ("RUNPOD_AI_API_KEY", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY", "COMFY_ORG_API_KEY")


def comfy_env(env):
    return {k: v for k, v in env.items() if k not in WORKER_SECRETS}


def main(argv):
    env = dict(os.environ)
    bad = port_error(argv)
    if bad:
        log(bad)
        return 2
    args = comfy_args(argv)
    yaml = prepare_models(env)
    cmd = [sys.executable, os.path.join(ROOT, "ComfyUI", "main.py"), "--extra-model-paths-config", yaml] + args
    serverless = bool(env.get("RUNPOD_WEBHOOK_GET_JOB"))
    local = env.get("SERVE_API_LOCALLY", "").lower() == "true"
    if not serverless and not local:
        sys.stdout.flush()
        os.execve(cmd[0], cmd, comfy_env(env))
    proc = subprocess.Popen(cmd, env=comfy_env(env))
    stop = threading.Event()

    def forward(signum, _frame):
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    timeout = int(env.get("COMFY_JOB_TIMEOUT") or 0) or None
    comfy = Comfy(comfy_address(args), proc, timeout)
    try:
        (serve_runpod if serverless else serve_local)(comfy, env, stop)
    except ComfyDied as e:
        log("%s; the worker exits so RunPod replaces it" % e)
        return 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
