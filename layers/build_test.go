package layers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/versions"
)

func load(t *testing.T, v *testsupport.Version) *versions.Spec {
	t.Helper()
	s, err := versions.Load(v.SpecFile, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func build(t *testing.T, v *testsupport.Version, base, cache string, mod func(*layers.BuildOptions)) *layers.Result {
	t.Helper()
	o := layers.BuildOptions{
		Options:   realize.Options{CacheDir: cache},
		Base:      base,
		WheelsDir: v.Wheels,
		LookupEnv: func(k string) (string, bool) {
			if k == "HF_ENDPOINT" {
				return v.HF.URL, true
			}
			if k == "HF_TOKEN" { // the sweep's secret, which v.HF then requires
				return os.LookupEnv(k)
			}
			return "", false
		},
		Getenv: func(string) string { return "" },
	}
	if mod != nil {
		mod(&o)
	}
	res, err := layers.Build(context.Background(), load(t, v), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, _ := l.Digest()
		out = append(out, d.String())
	}
	return out
}

// files reads an image's flattened filesystem: path -> content or link.
func files(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			out[h.Name] = "-> " + h.Linkname
		case tar.TypeReg:
			data, _ := io.ReadAll(tr)
			out[h.Name] = string(data)
		}
	}
	return out
}

func TestBuildLaysOutTheVersion(t *testing.T) {
	v := testsupport.NewVersion(t)
	res := build(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), nil)
	fs := files(t, res.App)
	for _, want := range []string{
		"opt/comfy/ComfyUI/main.py", "opt/comfy/custom_nodes/gguf/__init__.py",
		"opt/comfy/custom_nodes/ComfyUI-KJNodes/requirements.txt", "opt/comfy/extra_model_paths.yaml",
		"opt/comfy/entrypoint.sh", "opt/comfy/worker.py", "opt/comfy/comfy-image.json", "opt/comfy/.venv/pyvenv.cfg",
		"opt/comfy/.venv/lib/python3.11/site-packages/alpha/__init__.py",
		"opt/comfy/.venv/lib/python3.11/site-packages/beta-1.2.dist-info/METADATA",
		"opt/comfy/.venv/bin/gamma-tool",
	} {
		if _, ok := fs[want]; !ok {
			t.Errorf("app image lacks %s", want)
		}
	}
	for p := range fs {
		if strings.Contains(p, "/.git/") || strings.HasSuffix(p, ".pyc") {
			t.Errorf("app image holds %s", p)
		}
	}
	if got := fs["opt/comfy/ComfyUI/custom_nodes/gguf"]; got != "-> ../../custom_nodes/gguf" {
		t.Errorf("node link %q", got)
	}
	if got := fs["opt/comfy/.venv/bin/python"]; got != "-> /usr/bin/python3.11" {
		t.Errorf("venv python %q", got)
	}
	if !strings.HasPrefix(fs["opt/comfy/.venv/bin/gamma-tool"], "#!/opt/comfy/.venv/bin/python\n") {
		t.Errorf("console script shebang: %q", fs["opt/comfy/.venv/bin/gamma-tool"])
	}
	if !strings.Contains(fs["opt/comfy/.venv/pyvenv.cfg"], "home = /usr/bin\n") {
		t.Errorf("pyvenv.cfg: %q", fs["opt/comfy/.venv/pyvenv.cfg"])
	}
	if !strings.Contains(fs["opt/comfy/extra_model_paths.yaml"], "base_path: /models\n") {
		t.Error("yaml does not point at /models")
	}
	cf, _ := res.App.ConfigFile()
	if cf.Config.Env[0] != "PATH=/opt/comfy/.venv/bin:/usr/bin:/bin" || !contains(cf.Config.Env, "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True") {
		t.Errorf("env %q", cf.Config.Env)
	}
	for _, kv := range cf.Config.Env {
		if strings.HasPrefix(kv, "COMFY_MODELS_DIR=") {
			t.Errorf("the image presets %s; the entry point must choose", kv)
		}
	}
	// Arguments after the image name go to ComfyUI: the entry point is the
	// script, Cmd only its default arguments.
	if cf.Config.WorkingDir != "/opt/comfy" || strings.Join(cf.Config.Entrypoint, " ") != "/opt/comfy/entrypoint.sh" ||
		strings.Join(cf.Config.Cmd, " ") != "--listen 0.0.0.0 --port 8188" {
		t.Errorf("workdir %q entrypoint %q cmd %q", cf.Config.WorkingDir, cf.Config.Entrypoint, cf.Config.Cmd)
	}
	var manifest struct {
		VersionID string `json:"version_id"`
		Models    []struct{ Dest, Folder string }
	}
	if err := json.Unmarshal([]byte(fs["opt/comfy/comfy-image.json"]), &manifest); err != nil || manifest.VersionID != "demo" || len(manifest.Models) != 2 {
		t.Errorf("comfy-image.json: %v %+v", err, manifest)
	}
	m, _ := res.App.Manifest()
	if m.Annotations["org.opencontainers.image.version"] != "demo" || m.Annotations["org.opencontainers.image.revision"] != v.Core.RevParse("HEAD") {
		t.Errorf("manifest annotations %v", m.Annotations)
	}
	if m.Annotations[layers.AnnNodePrefix+"gguf"] == "" {
		t.Error("no annotation names the gguf node")
	}
	// The models image: one uncompressed layer per file at <subdir>/<file>.
	if res.Models == nil {
		t.Fatal("no models image")
	}
	mfs := files(t, res.Models)
	for dest, content := range v.Models {
		if mfs[dest] != string(content) {
			t.Errorf("models image: %s wrong or missing", dest)
		}
	}
	mm, _ := res.Models.Manifest()
	for _, l := range mm.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar" || l.Annotations[layers.AnnSHA256] == "" || l.Annotations[layers.AnnSource] == "" {
			t.Errorf("model layer %+v", l)
		}
	}
	// The lock records the image's packages and every layer.
	if len(res.Lock.Python.ImagePackages) != 3 || len(res.Lock.Layers) != 7 {
		t.Errorf("lock: %d image packages, %d layers", len(res.Lock.Python.ImagePackages), len(res.Lock.Layers))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestSameVersionSameDigestsFromTwoCaches(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	a := build(t, v, base, testsupport.TempDir(t), nil)
	b := build(t, v, base, testsupport.TempDir(t), func(o *layers.BuildOptions) { o.Compression = materialize.Gzip })
	if digestOf(t, a.App) != digestOf(t, b.App) || digestOf(t, a.Models) != digestOf(t, b.Models) {
		t.Fatalf("digests differ between caches:\napp %s vs %s\nmodels %s vs %s", digestOf(t, a.App), digestOf(t, b.App), digestOf(t, a.Models), digestOf(t, b.Models))
	}
	// SOURCE_DATE_EPOCH changes the mtimes, and so the digests.
	c := build(t, v, base, testsupport.TempDir(t), func(o *layers.BuildOptions) {
		o.Getenv = func(k string) string { return map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}[k] }
	})
	if digestOf(t, c.App) == digestOf(t, a.App) {
		t.Fatal("SOURCE_DATE_EPOCH did not change the image")
	}
	cf, _ := c.App.ConfigFile()
	if !cf.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("created %v", cf.Created)
	}
}

func TestOneChangedNodeRepacksAndPushesOneLayer(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := testsupport.TempDir(t)
	reg := testsupport.NewRegistry(t)
	out, err := layers.ParseLocation(reg.Host + "/comfy/demo:v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := build(t, v, base, cache, nil)
	if err := layers.Write(ctx, first, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	n0, _ := reg.Uploads()
	// Unchanged: nothing is packed and no blob is uploaded.
	again := build(t, v, base, cache, nil)
	for _, p := range again.Parts {
		if p.Action == plan.Pack {
			t.Errorf("unchanged %s %s was packed again", p.Kind, p.Name)
		}
	}
	if err := layers.Write(ctx, again, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if n, _ := reg.Uploads(); n != n0 {
		t.Fatalf("rebuild of an unchanged version uploaded %d blobs", n-n0)
	}
	// One node moves: one layer differs; that blob and the config go up.
	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"nodes.py": "FIXED = True\n"})
	os.Remove(versions.LockPath(cache, "demo"))
	changed := build(t, v, base, cache, nil)
	before, after := layerDigests(t, first.App), layerDigests(t, changed.App)
	diff := 0
	for i := range before {
		if before[i] != after[i] {
			diff++
		}
	}
	if len(before) != len(after) || diff != 1 {
		t.Fatalf("%d layers differ, want 1", diff)
	}
	packed := 0
	for _, p := range changed.Parts {
		if p.Action == plan.Pack {
			packed++
			if p.Name != "ComfyUI-KJNodes" {
				t.Errorf("%s %s was packed", p.Kind, p.Name)
			}
		}
	}
	if packed != 1 {
		t.Errorf("%d layers packed, want 1", packed)
	}
	if err := layers.Write(ctx, changed, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	n2, digests := reg.Uploads()
	if n2-n0 != 2 {
		t.Fatalf("uploaded %d blobs (%v), want the changed layer and the config", n2-n0, digests[n0:])
	}
}

func TestGzipDigestDoesNotDependOnGOMAXPROCS(t *testing.T) {
	content := make([]byte, 5<<20)
	for i := range content {
		content[i] = byte(i*7 + i/1000)
	}
	entries := func() ([]materialize.Entry, error) {
		return []materialize.Entry{materialize.BytesEntry("data/big.bin", 0o644, content), materialize.BytesEntry("data/small.txt", 0o644, []byte("x"))}, nil
	}
	var digests []string
	for _, procs := range []int{1, 2, 8} {
		prev := runtime.GOMAXPROCS(procs)
		c := materialize.Cache{Dir: testsupport.TempDir(t), Jobs: procs}
		l, _, err := c.Build(context.Background(), materialize.Key("k"), materialize.Gzip, materialize.TarOptions{ModTime: time.Unix(0, 0)}, entries)
		runtime.GOMAXPROCS(prev)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		digests = append(digests, d.String())
		// The digest is the blob's, and the diffID the tar's.
		rc, _ := l.Compressed()
		h := sha256.New()
		io.Copy(h, rc)
		rc.Close()
		if "sha256:"+hex.EncodeToString(h.Sum(nil)) != d.String() {
			t.Fatal("digest is not the sha256 of the compressed blob")
		}
	}
	if digests[0] != digests[1] || digests[1] != digests[2] {
		t.Fatalf("digests differ with GOMAXPROCS: %v", digests)
	}
}

func TestModelLayerDigestIsRememberedNotReread(t *testing.T) {
	dir := testsupport.TempDir(t)
	file := filepath.Join(dir, "blob")
	content := bytes.Repeat([]byte("weights!"), 100_000)
	os.WriteFile(file, content, 0o644)
	sum := sha256.Sum256(content)
	sha := hex.EncodeToString(sum[:])
	l, err := materialize.NewModelLayer(dir, file, "vae/x.safetensors", sha, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	// The layer is a valid tar holding the file, and its digest is the tar's.
	rc, _ := l.Uncompressed()
	data, _ := io.ReadAll(rc)
	rc.Close()
	tsum := sha256.Sum256(data)
	if d, _ := l.Digest(); d.Hex != hex.EncodeToString(tsum[:]) {
		t.Fatal("digest is not the sha256 of the layer")
	}
	if size, _ := l.Size(); size != int64(len(data)) {
		t.Fatalf("size %d, stream %d", size, len(data))
	}
	tr := tar.NewReader(bytes.NewReader(data))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if h.Name == "vae/x.safetensors" {
			got, _ := io.ReadAll(tr)
			if !bytes.Equal(got, content) {
				t.Fatal("file content differs in the layer")
			}
		}
	}
	if strings.Join(names, ",") != "vae/,vae/x.safetensors" {
		t.Fatalf("entries %v", names)
	}
	// Same size and mtime, other bytes: a layer that re-read the file would
	// change. (A file whose size or mtime moved is read again.)
	fi, _ := os.Stat(file)
	os.WriteFile(file, bytes.Repeat([]byte("WEIGHTS?"), 100_000), 0o644)
	os.Chtimes(file, fi.ModTime(), fi.ModTime())
	again, err := materialize.NewModelLayer(dir, file, "vae/x.safetensors", sha, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Fatal("the model file was read again to compute its layer digest")
	}
}

func TestLayerBudgetGroupsNodesStably(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	extra := ""
	for i := range 6 {
		r := testsupport.NewRepo(t, filepath.Join(v.Dir, "repos", "node"+string(rune('a'+i))))
		r.Commit("init", map[string]string{"__init__.py": "N = " + string(rune('0'+i)) + "\n"})
	}
	spec, _ := os.ReadFile(v.SpecFile)
	for i := range 6 {
		extra += `, {"repo": "file://` + filepath.Join(v.Dir, "repos", "node"+string(rune('a'+i))) + `"}`
	}
	os.WriteFile(v.SpecFile, []byte(strings.Replace(string(spec), `"name": "gguf"},`, `"name": "gguf"}`+extra+`,`, 1)), 0o644)
	cache := testsupport.TempDir(t)
	// 1 base layer + core + venv + config + 4 node groups = 8.
	res := build(t, v, base, cache, func(o *layers.BuildOptions) { o.MaxLayers = 8; o.Models = "skip" })
	ls, _ := res.App.Layers()
	if len(ls) > 8 {
		t.Fatalf("%d layers, budget 8", len(ls))
	}
	files := files(t, res.App)
	for i := range 6 {
		if _, ok := files["opt/comfy/custom_nodes/node"+string(rune('a'+i))+"/__init__.py"]; !ok {
			t.Errorf("node%c missing from the grouped layers", 'a'+i)
		}
	}
	// Moving one node changes only its group's layer.
	testsupport.NewRepo(t, filepath.Join(v.Dir, "repos", "nodec")).Commit("more", map[string]string{"x.py": "1"})
	os.Remove(versions.LockPath(cache, "demo"))
	moved := build(t, v, base, cache, func(o *layers.BuildOptions) { o.MaxLayers = 8; o.Models = "skip" })
	a, b := layerDigests(t, res.App), layerDigests(t, moved.App)
	diff := 0
	for i := range a {
		if a[i] != b[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Fatalf("%d layers changed when one grouped node moved, want 1", diff)
	}
}

func TestNoWheelForTheBaseIsNamed(t *testing.T) {
	v := testsupport.NewVersion(t)
	testsupport.BuildWheelTagged(t, v.Wheels, testsupport.Wheel{Name: "armonly", Version: "1.0"}, "cp311-cp311-manylinux_2_17_aarch64")
	v.WriteSpec(t, `"python": {"requirements": ["armonly"]},`)
	o := layers.BuildOptions{Options: realize.Options{CacheDir: testsupport.TempDir(t)}, Base: testsupport.SyntheticBase(t), WheelsDir: v.Wheels, Models: "skip",
		LookupEnv: func(string) (string, bool) { return "", false }, Getenv: func(string) string { return "" }}
	_, err := layers.Build(context.Background(), load(t, v), o)
	if err == nil || !strings.Contains(err.Error(), "no wheel of armonly") || !strings.Contains(err.Error(), "python.requirements") {
		t.Fatalf("error %v", err)
	}
}

func TestTarOutputIsDockerLoadableAndInspectable(t *testing.T) {
	v := testsupport.NewVersion(t)
	res := build(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), nil)
	file := filepath.Join(testsupport.TempDir(t), "demo.tar")
	loc, _ := layers.ParseLocation("tar:" + file)
	if err := layers.Write(context.Background(), res, []layers.Location{loc}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	// docker load reads manifest.json; both images are tagged in it.
	manifest := readTarMember(t, file, "manifest.json")
	if !strings.Contains(manifest, `"demo:latest"`) || !strings.Contains(manifest, `"demo:latest-models"`) {
		t.Fatalf("manifest.json: %s", manifest)
	}
	img, err := layers.ReadImage(loc)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, img) == "" {
		t.Fatal("no digest")
	}
	// The tarball drops layer annotations; inspect falls back on history.
	info, err := layers.Inspect(img)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]string{}
	for _, l := range info.Layers {
		parts[l.Part+" "+l.Name] = l.Commit
	}
	if parts["node gguf"] != v.Nodes["ComfyUI-GGUF"].RevParse("HEAD") || parts["core ComfyUI"] == "" {
		t.Fatalf("inspect of the tarball: %+v", info.Layers)
	}
}

func readTarMember(t *testing.T, file, name string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in %s", name, file)
		}
		if h.Name == name {
			data, _ := io.ReadAll(tr)
			return string(data)
		}
	}
}

func TestInspectNamesEveryPart(t *testing.T) {
	v := testsupport.NewVersion(t)
	res := build(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), func(o *layers.BuildOptions) { o.Models = "bake" })
	if res.Models != nil {
		t.Fatal("--models bake made a models image")
	}
	info, err := layers.Inspect(res.App)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range info.Layers {
		got = append(got, l.Part)
		if l.Part == "model" && (l.SHA256 == "" || l.Source == "") {
			t.Errorf("model layer without sha256/source: %+v", l)
		}
	}
	if strings.Join(got, ",") != "base,core,node,node,venv,config,model,model" {
		t.Fatalf("parts %v", got)
	}
	fs := files(t, res.App)
	for dest, content := range v.Models {
		if fs["models/"+dest] != string(content) {
			t.Errorf("baked model %s missing", dest)
		}
	}
	var buf bytes.Buffer
	info.Print(&buf)
	if !strings.Contains(buf.String(), "gguf @ "+v.Nodes["ComfyUI-GGUF"].RevParse("HEAD")[:12]) {
		t.Errorf("printed inspect:\n%s", buf.String())
	}
}

func TestOfflineBuildFromCacheAndLock(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := testsupport.TempDir(t)
	online := build(t, v, base, cache, nil)
	// No wheels folder, no HF server: the lock and the cache must do.
	os.RemoveAll(v.Wheels)
	v.HF.Close()
	offline := build(t, v, base, cache, func(o *layers.BuildOptions) { o.Offline = true; o.WheelsDir = "" })
	if digestOf(t, online.App) != digestOf(t, offline.App) || digestOf(t, online.Models) != digestOf(t, offline.Models) {
		t.Fatal("offline build differs")
	}
}

func TestZstdLayers(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	a := build(t, v, base, testsupport.TempDir(t), func(o *layers.BuildOptions) { o.Compression = materialize.Zstd; o.Models = "skip" })
	b := build(t, v, base, testsupport.TempDir(t), func(o *layers.BuildOptions) { o.Compression = materialize.Zstd; o.Models = "skip" })
	if digestOf(t, a.App) != digestOf(t, b.App) {
		t.Fatal("zstd builds differ")
	}
	m, _ := a.App.Manifest()
	if m.Layers[1].MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Fatalf("media type %s", m.Layers[1].MediaType)
	}
	if _, ok := files(t, a.App)["opt/comfy/ComfyUI/main.py"]; !ok {
		t.Fatal("zstd layer unreadable")
	}
}

func TestSecretsStayOutOfImages(t *testing.T) {
	v := testsupport.NewVersion(t)
	token := testsupport.Secret()
	v.HF.RequireToken(token)
	spec, _ := os.ReadFile(v.SpecFile)
	os.WriteFile(v.SpecFile, []byte(strings.Replace(string(spec), `"env": {`, `"env": {"HF_TOKEN": "${HF_TOKEN}", `, 1)), 0o644)
	res := build(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), func(o *layers.BuildOptions) {
		o.LookupEnv = func(k string) (string, bool) {
			switch k {
			case "HF_TOKEN":
				return token, true
			case "HF_ENDPOINT":
				return v.HF.URL, true
			}
			return "", false
		}
	})
	for _, img := range []v1.Image{res.App, res.Models} {
		raw, _ := img.RawConfigFile()
		man, _ := img.RawManifest()
		if strings.Contains(string(raw)+string(man), token) {
			t.Fatal("the token is in an image config or manifest")
		}
		for p, content := range files(t, img) {
			if strings.Contains(content, token) {
				t.Fatalf("the token is in %s", p)
			}
		}
	}
}

func TestSmallModelsShareALayerWhenTheBudgetIsShort(t *testing.T) {
	v := testsupport.NewVersion(t)
	// base 1 + core + 2 nodes + venv + config = 6: one slot is left for the
	// two baked model files.
	res := build(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), func(o *layers.BuildOptions) { o.MaxLayers = 7; o.Models = "bake" })
	ls, _ := res.App.Layers()
	if len(ls) != 7 {
		t.Fatalf("app image has %d layers, budget 7", len(ls))
	}
	fs := files(t, res.App)
	for dest, content := range v.Models {
		if fs["models/"+dest] != string(content) {
			t.Errorf("%s missing from the shared layer", dest)
		}
	}
	m, _ := res.App.Manifest()
	last := m.Layers[len(m.Layers)-1].Annotations
	if !strings.Contains(last[layers.AnnName], "vae/wan_vae.safetensors") || !strings.Contains(last[layers.AnnName], "diffusion_models/wan_unet.gguf") {
		t.Errorf("shared layer annotations %v", last)
	}
	// With room for every file, each has its own layer again.
	res = build(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), func(o *layers.BuildOptions) { o.Models = "bake" })
	if ls, _ := res.App.Layers(); len(ls) != 8 {
		t.Fatalf("%d layers, want 8", len(ls))
	}
}

func TestRegistryIsTheCacheOfAFreshRunner(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	reg := testsupport.NewRegistry(t)
	out, _ := layers.ParseLocation(reg.Host + "/comfy/demo:v1")
	ctx := context.Background()
	push := func(o *layers.BuildOptions) { o.PushTo = []layers.Location{out} }
	first := build(t, v, base, testsupport.TempDir(t), push)
	if err := layers.Write(ctx, first, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	uploads, _ := reg.Uploads()
	hfBefore := len(v.HF.Requests())
	// A new runner: empty cache, no lock. Nothing is packed, no model is
	// downloaded, and the push uploads nothing.
	var log bytes.Buffer
	fresh := build(t, v, base, testsupport.TempDir(t), func(o *layers.BuildOptions) { push(o); o.Log = &log })
	// Each reused part is named in the log; the config part, which has
	// no name, as "config", not "config " before the colon.
	if !regexp.MustCompile(`(?m)^config: in `).MatchString(log.String()) || strings.Contains(log.String(), " : ") {
		t.Errorf("the log names a reused part without its name:\n%s", log.String())
	}
	for _, p := range fresh.Parts {
		if p.Action != plan.ReuseRegistry {
			t.Errorf("%s %s: packed %v, from the registry %v", p.Kind, p.Name, p.Action == plan.Pack, p.Action == plan.ReuseRegistry)
		}
	}
	// The hub is asked (one HEAD per model: the lock rule resolves an
	// unpinned revision afresh), nothing is downloaded.
	for _, q := range v.HF.Requests()[hfBefore:] {
		if q.Method != http.MethodHead {
			t.Errorf("model downloaded again: %s %s", q.Method, q.Path)
		}
	}
	if digestOf(t, fresh.App) != digestOf(t, first.App) || digestOf(t, fresh.Models) != digestOf(t, first.Models) {
		t.Fatal("a build from the registry cache differs")
	}
	if err := layers.Write(ctx, fresh, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if n, _ := reg.Uploads(); n != uploads {
		t.Fatalf("uploaded %d blobs", n-uploads)
	}
	if len(fresh.Lock.Models) != 2 || fresh.Lock.Models[0].SHA256 == "" || fresh.Lock.Models[0].Size == 0 {
		t.Errorf("lock models from the registry: %+v", fresh.Lock.Models)
	}
	// An OCI layout output needs the bytes: then everything is built locally.
	local := build(t, v, base, testsupport.TempDir(t), func(o *layers.BuildOptions) {
		loc, _ := layers.ParseLocation("oci:" + testsupport.TempDir(t) + ":x")
		o.PushTo = []layers.Location{out, loc}
	})
	for _, p := range local.Parts {
		if p.Action == plan.ReuseRegistry {
			t.Errorf("%s %s came from the registry though an OCI layout is written", p.Kind, p.Name)
		}
	}
}

func TestModelLayerDigestComputedWhileDownloading(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	content := bytes.Repeat([]byte("weights and biases "), 20_000)
	sha := hf.Add("o/r/unet.safetensors", content)
	layerCache := testsupport.TempDir(t)
	f := &models.Fetcher{Store: models.Store{Dir: testsupport.TempDir(t)}, HFEndpoint: hf.URL}
	modTime := time.Unix(0, 0)
	_, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/unet.safetensors",
		Observe: materialize.ModelLayerObserver(layerCache, "diffusion_models/unet.safetensors", modTime, f.Store.BlobPath)})
	if err != nil {
		t.Fatal(err)
	}
	// The true digest, from a copy of the content in another cache.
	copyFile := filepath.Join(testsupport.TempDir(t), "copy")
	os.WriteFile(copyFile, content, 0o644)
	truth, err := materialize.NewModelLayer(testsupport.TempDir(t), copyFile, "diffusion_models/unet.safetensors", sha, modTime)
	if err != nil {
		t.Fatal(err)
	}
	// Swap the stored file for other bytes of the same size and mtime: the
	// layer made from it has the true digest only if the download
	// remembered it.
	store := f.Store.BlobPath(sha)
	fi, _ := os.Stat(store)
	os.Chmod(store, 0o644)
	os.WriteFile(store, bytes.Repeat([]byte{0xAB}, len(content)), 0o644)
	os.Chtimes(store, fi.ModTime(), fi.ModTime())
	l, err := materialize.NewModelLayer(layerCache, store, "diffusion_models/unet.safetensors", sha, modTime)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.Digest()
	want, _ := truth.Digest()
	if got != want {
		t.Fatalf("digest %s, want %s: it was not computed during the download", got, want)
	}
}

// A core whose custom_nodes is a symlink is refused by build as by realize
// (exit 2, naming the core's commit): in the image every node's link would
// be put through it, wherever it points.
func TestCoreWithCustomNodesLinkIsRefused(t *testing.T) {
	v := testsupport.NewVersion(t)
	v.Core.Git("rm", "-rq", "custom_nodes")
	if err := os.Symlink("/etc", filepath.Join(v.Core.Dir, "custom_nodes")); err != nil {
		t.Fatal(err)
	}
	commit := v.Core.Commit("custom_nodes is a link", nil)
	o := layers.BuildOptions{Options: realize.Options{CacheDir: testsupport.TempDir(t)}, Base: testsupport.SyntheticBase(t), WheelsDir: v.Wheels, Models: "skip",
		LookupEnv: func(string) (string, bool) { return "", false }, Getenv: func(string) string { return "" }}
	_, err := layers.Build(context.Background(), load(t, v), o)
	var bad interface{ BadInput() bool }
	if err == nil || !errors.As(err, &bad) || !strings.Contains(err.Error(), "custom_nodes") || !strings.Contains(err.Error(), commit) {
		t.Fatalf("error %v, want bad input naming custom_nodes and commit %s", err, commit)
	}
}
