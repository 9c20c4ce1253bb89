package testsupport

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Version is a complete version to build or realize: a ComfyUI stand-in and
// two node repositories (file://), a folder of wheels, model files on an
// HF-like server, and a spec naming them all.
type Version struct {
	Dir      string
	Core     *Repo
	Nodes    map[string]*Repo // by node name
	HF       *HFServer
	Wheels   string
	SpecFile string
	// Models maps each model's destination to its content.
	Models map[string][]byte
}

// NewVersion makes the version "demo" under TempDir(t). Its stand-in
// ComfyUI main.py lists, for each model folder of the yaml it is given,
// the files it finds there (as ComfyUI would register them). Under the
// sweep its hub requires the sweep's secret as HF_TOKEN.
func NewVersion(t testing.TB) *Version {
	t.Helper()
	v := &Version{Dir: TempDir(t), Nodes: map[string]*Repo{}, HF: NewHFServer(t), Models: map[string][]byte{}}
	RequireSweepToken(v.HF)
	v.Core = NewRepo(t, filepath.Join(v.Dir, "repos", "ComfyUI"))
	v.Core.Commit("core", map[string]string{"main.py": StandInMain, "requirements.txt": "alpha\n", "custom_nodes/websocket_image_save.py": "# built in\n"})
	for name, req := range map[string]string{"ComfyUI-GGUF": "beta>=1.0\n", "ComfyUI-KJNodes": "gamma\n"} {
		r := NewRepo(t, filepath.Join(v.Dir, "repos", name))
		r.Commit("init", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}  # " + name + "\n", "requirements.txt": req})
		v.Nodes[name] = r
	}
	v.Wheels = filepath.Join(v.Dir, "wheels")
	BuildWheel(t, v.Wheels, Wheel{Name: "alpha", Version: "1.0"})
	BuildWheel(t, v.Wheels, Wheel{Name: "beta", Version: "1.2", Requires: []string{"alpha>=1.0"}})
	BuildWheel(t, v.Wheels, Wheel{Name: "gamma", Version: "2.0", Scripts: map[string]string{"gamma-tool": "gamma:main"}})
	for dest, size := range map[string]int{"vae/wan_vae.safetensors": 150_000, "diffusion_models/wan_unet.gguf": 300_000} {
		content := make([]byte, size)
		rand.Read(content)
		v.HF.Add("Comfy-Org/Wan/split/"+filepath.Base(dest), content)
		v.Models[dest] = content
	}
	v.WriteSpec(t, "")
	return v
}

// WriteSpec writes versions/demo.json; extra is inserted as top-level fields.
func (v *Version) WriteSpec(t testing.TB, extra string) {
	t.Helper()
	spec := fmt.Sprintf(`{
  "schema_version": 2,
  "version_id": "demo",
  "comfy": {"repo": %q},
  "custom_nodes": [
    {"repo": %q, "name": "gguf"},
    {"repo": %q}
  ],
  "models": [
    {"source": "hf://Comfy-Org/Wan/split/wan_vae.safetensors", "target_subdir": "vae"},
    {"source": "hf://Comfy-Org/Wan/split/wan_unet.gguf", "target_subdir": "diffusion_models"}
  ],
  %s
  "env": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
}`, v.Core.FileURL(), v.Nodes["ComfyUI-GGUF"].FileURL(), v.Nodes["ComfyUI-KJNodes"].FileURL(), extra)
	v.SpecFile = filepath.Join(v.Dir, "versions", "demo.json")
	os.MkdirAll(filepath.Dir(v.SpecFile), 0o755)
	if err := os.WriteFile(v.SpecFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Env returns what a process needs to use the fixture with a cache.
func (v *Version) Env(cache string) []string {
	return []string{"COMFY_CACHE=" + cache, "HF_ENDPOINT=" + v.HF.URL}
}

// StandInMain stands in for ComfyUI's main.py: it reads the yaml given by
// --extra-model-paths-config the way ComfyUI's loader does (base_path, each
// value split on newlines, unet/clip mapped to their new folder names) and
// prints "found <folder> <file>" for every file in the registered folders.
// Then, by $COMFY_STANDIN: unset, it exits; "wait", it runs until killed or
// until the file $COMFY_STANDIN_DIE appears (then exits 3, a crash);
// "http", it serves a small ComfyUI API on its --listen/--port whose
// SaveImage nodes save a 1x1 PNG (the worker's end-to-end tests).
const StandInMain = `import os, sys
legacy = {"unet": "diffusion_models", "clip": "text_encoders"}
args = sys.argv[1:]
conf = args[args.index("--extra-model-paths-config") + 1] if "--extra-model-paths-config" in args else None
folders = {}
if conf:
    base, key = "", None
    for line in open(conf):
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("    ") and key:
            folders.setdefault(legacy.get(key, key), []).append(os.path.join(base, line.strip()))
        elif line.startswith("  "):
            k, _, v = line.strip().partition(":")
            key = None
            if k == "base_path":
                base = v.strip()
            elif v.strip() == "|":
                key = k
for folder, dirs in sorted(folders.items()):
    for d in dirs:
        if os.path.isdir(d):
            for root, _, files in os.walk(d):
                for f in sorted(files):
                    print("found", folder, os.path.relpath(os.path.join(root, f), d))
print("ComfyUI stand-in env:", " ".join(sorted(os.environ)))
print("ComfyUI stand-in ready, args:", " ".join(args), flush=True)
mode = os.environ.get("COMFY_STANDIN")
if mode == "wait":
    import time
    die = os.environ.get("COMFY_STANDIN_DIE")
    while not (die and os.path.exists(die)):
        time.sleep(0.05)
    print("ComfyUI stand-in crashes", flush=True)
    sys.exit(3)
if mode == "http":
    import http.server, importlib.util, json, struct, zlib
    # Custom nodes are imported as ComfyUI does, failures logged its way.
    times = []
    nodes_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "custom_nodes")
    for name in sorted(os.listdir(nodes_dir)) if os.path.isdir(nodes_dir) else []:
        path = os.path.join(nodes_dir, name)
        if not os.path.isfile(os.path.join(path, "__init__.py")):
            continue
        try:
            spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"))
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
            times.append("   0.0 seconds: " + path)
        except Exception as e:
            print("Cannot import", path, "module for custom nodes:", e, flush=True)
            times.append("   0.0 seconds (IMPORT FAILED): " + path)
    print("\nImport times for custom nodes:\n" + "\n".join(times) + "\n", flush=True)
    listed = {}
    for folder, dirs in folders.items():
        for d in dirs:
            for root, _, files in os.walk(d):
                listed.setdefault(folder, []).extend(os.path.relpath(os.path.join(root, f), d) for f in files)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))
    history = {}
    class API(http.server.BaseHTTPRequestHandler):
        def reply(self, code, body, ctype="application/json"):
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def do_GET(self):
            if self.path == "/":
                return self.reply(200, b"ComfyUI stand-in", "text/html")
            if self.path.startswith("/history/"):
                pid = self.path[len("/history/"):]
                return self.reply(200, {pid: history[pid]} if pid in history else {})
            if self.path.startswith("/view?"):
                return self.reply(200, png, "image/png")
            if self.path.startswith("/object_info"):
                return self.reply(200, {})
            if self.path == "/models":
                return self.reply(200, sorted(listed))
            if self.path.startswith("/models/"):
                return self.reply(200, sorted(listed.get(self.path[len("/models/"):], [])))
            self.reply(404, {"error": "not found"})
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/upload/image":
                return self.reply(200, {"name": "upload", "subfolder": "", "type": "input"})
            if self.path != "/prompt":
                return self.reply(404, {"error": "not found"})
            prompt = json.loads(body)["prompt"]
            pid = "p%d" % (len(history) + 1)
            outputs = {}
            for nid, node in prompt.items():
                if node.get("class_type") == "SaveImage":
                    name = node.get("inputs", {}).get("filename_prefix", "ComfyUI") + "_00001_.png"
                    outputs[nid] = {"images": [{"filename": name, "subfolder": "", "type": "output"}]}
            history[pid] = {"outputs": outputs, "status": {"status_str": "success", "completed": True, "messages": []}}
            self.reply(200, {"prompt_id": pid, "number": len(history), "node_errors": {}})
    def opt(name, default):
        return args[args.index(name) + 1] if name in args else default
    host = opt("--listen", "127.0.0.1").split(",")[0]
    http.server.ThreadingHTTPServer((host, int(opt("--port", "8188"))), API).serve_forever()
`

// SyntheticBase writes a tiny base image (not runnable: a fake python3.11
// and a libc.so.6 naming glibc 2.36) into an OCI layout and returns
// "oci:DIR:base". Unit tests read it the way a real base is read.
func SyntheticBase(t testing.TB) string {
	t.Helper()
	img := withLayer(t, empty.Image, map[string]string{
		"usr/bin/python3.11":                   "#!fake python\n",
		"usr/lib/x86_64-linux-gnu/libc.so.6":   "\x7fELF... GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.\n",
		"usr/lib/python3/dist-packages/README": "system packages\n",
	}, "synthetic base")
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/bin:/bin"}
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return writeBase(t, img)
}

// BaseWithFiles is the base at loc ("oci:DIR:TAG") with one more layer
// holding files (path -> content), written to a new OCI layout: a base
// with packages installed in its system site packages, for example.
func BaseWithFiles(t testing.TB, loc string, files map[string]string) string {
	t.Helper()
	return writeBase(t, withLayer(t, SyntheticBaseImage(t, loc), files, "test packages"))
}

func withLayer(t testing.TB, img v1.Image, files map[string]string, history string) v1.Image {
	t.Helper()
	tarFile := filepath.Join(TempDir(t), "layer.tar")
	if err := writeSimpleTar(tarFile, files); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromFile(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: history}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeBase writes img into a new OCI layout as "base".
func writeBase(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := TempDir(t)
	p, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "base"})); err != nil {
		t.Fatal(err)
	}
	return "oci:" + filepath.Join(dir, "oci") + ":base"
}

// SyntheticBaseImage is SyntheticBase read back as an image.
func SyntheticBaseImage(t testing.TB, loc string) v1.Image {
	t.Helper()
	path, tag, _ := strings.Cut(strings.TrimPrefix(loc, "oci:"), ":")
	p, err := layout.FromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := p.ImageIndex()
	m, _ := idx.IndexManifest()
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == tag {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no %s in %s", tag, path)
	return nil
}
