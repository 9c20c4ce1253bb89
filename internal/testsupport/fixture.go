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
	v.Core.Commit("core", map[string]string{"main.py": standInMain, "requirements.txt": "alpha\n", "custom_nodes/websocket_image_save.py": "# built in\n"})
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

// standInMain stands in for ComfyUI's main.py: it reads the yaml given by
// --extra-model-paths-config the way ComfyUI's loader does (base_path, each
// value split on newlines, unet/clip mapped to their new folder names) and
// prints "found <folder> <file>" for every file in the registered folders.
const standInMain = `import os, sys
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
print("ComfyUI stand-in ready, args:", " ".join(args))
`

// SyntheticBase writes a tiny base image (not runnable: a fake python3.11
// and a libc.so.6 naming glibc 2.36) into an OCI layout and returns
// "oci:DIR:base". Unit tests read it the way a real base is read.
func SyntheticBase(t testing.TB) string {
	t.Helper()
	dir := TempDir(t)
	tarFile := filepath.Join(dir, "rootfs.tar")
	files := map[string]string{
		"usr/bin/python3.11":                   "#!fake python\n",
		"usr/lib/x86_64-linux-gnu/libc.so.6":   "\x7fELF... GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.\n",
		"usr/lib/python3/dist-packages/README": "system packages\n",
	}
	if err := writeSimpleTar(tarFile, files); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromFile(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "synthetic base"}})
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/bin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
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
