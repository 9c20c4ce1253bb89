package assemble_test

import (
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/comfy-image/comfy-image/layers/assemble"
)

var created = time.Unix(1700000000, 0).UTC()

// baseWithEnv is a random two-layer base whose config sets PATH and LANG.
func baseWithEnv(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(64, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Env = []string{"PATH=/opt/py/bin:/usr/bin", "LANG=C.UTF-8"}
	cf.Config.Labels = map[string]string{"from.base": "kept"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func randomLayers(t *testing.T, n int) []assemble.Layer {
	t.Helper()
	var out []assemble.Layer
	for i := range n {
		l, err := random.Layer(32, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, assemble.Layer{Layer: l, Key: string(rune('a' + i)),
			Annotations: map[string]string{assemble.AnnPart: "node"}, History: "layer " + string(rune('a'+i))})
	}
	return out
}

// TestAppImageConfig checks what a user inspects in the app image: the
// venv first on PATH with the base's PATH after it, the base's variables
// kept, the spec's variables sorted, entry point, working directory,
// ports, labels also as manifest annotations, and the base's labels kept.
func TestAppImageConfig(t *testing.T) {
	base := baseWithEnv(t)
	img, err := assemble.App(base, assemble.AppConfig{
		Layers:       randomLayers(t, 2),
		Created:      created,
		Root:         "opt/comfy",
		Entrypoint:   []string{"/opt/comfy/entrypoint.sh"},
		Cmd:          []string{"--listen"},
		Ports:        []string{"8188/tcp"},
		Env:          map[string]string{"ZED": "1", "ALPHA": "2"},
		VersionID:    "demo",
		SpecDigest:   "sha256:spec",
		CoreRepo:     "https://example.com/ComfyUI",
		CoreCommit:   "abc",
		BaseName:     "registry.example.com/base:1",
		ModelsImage:  "sha256:models",
		Nodes:        []assemble.Node{{Name: "gguf", Repo: "https://example.com/gguf", Commit: "def"}},
		Models:       map[string]string{"vae/x.safetensors": "123"},
		ConfigLabels: map[string]string{"dev.comfy-image.base-facts": "{}"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := []string{"PATH=/opt/comfy/.venv/bin:/opt/py/bin:/usr/bin", "LANG=C.UTF-8", "ALPHA=2", "VIRTUAL_ENV=/opt/comfy/.venv", "ZED=1"}
	if !slices.Equal(cf.Config.Env, wantEnv) {
		t.Errorf("env %q, want %q", cf.Config.Env, wantEnv)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/opt/comfy/entrypoint.sh"}) || !slices.Equal(cf.Config.Cmd, []string{"--listen"}) {
		t.Errorf("entrypoint %q cmd %q", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if cf.Config.WorkingDir != "/opt/comfy" {
		t.Errorf("working dir %q", cf.Config.WorkingDir)
	}
	if _, ok := cf.Config.ExposedPorts["8188/tcp"]; !ok || len(cf.Config.ExposedPorts) != 1 {
		t.Errorf("ports %v", cf.Config.ExposedPorts)
	}
	if !cf.Created.Time.Equal(created) {
		t.Errorf("created %v, want %v", cf.Created, created)
	}
	baseDigest, _ := base.Digest()
	want := map[string]string{
		specs.AnnotationSource:                     "https://example.com/ComfyUI",
		specs.AnnotationRevision:                   "abc",
		specs.AnnotationVersion:                    "demo",
		specs.AnnotationCreated:                    "2023-11-14T22:13:20Z",
		specs.AnnotationBaseImageDigest:            baseDigest.String(),
		specs.AnnotationBaseImageName:              "registry.example.com/base:1",
		assemble.AnnModelsImage:                    "sha256:models",
		assemble.AnnSpecDigest:                     "sha256:spec",
		assemble.AnnNodePrefix + "gguf":            "https://example.com/gguf@def",
		assemble.AnnModelPfx + "vae/x.safetensors": "123",
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if cf.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], v)
		}
		if m.Annotations[k] != v {
			t.Errorf("manifest annotation %s = %q, want %q", k, m.Annotations[k], v)
		}
	}
	if cf.Config.Labels["from.base"] != "kept" {
		t.Error("the base's label was dropped")
	}
	if cf.Config.Labels["dev.comfy-image.base-facts"] != "{}" {
		t.Error("a config label is missing")
	}
	if _, ok := m.Annotations["dev.comfy-image.base-facts"]; ok {
		t.Error("a config-only label is a manifest annotation")
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("media types %s, %s: want OCI", m.MediaType, m.Config.MediaType)
	}
}

// TestAppImageLayers checks the layers come after the base's, in order,
// each with its annotations, its key and a history line, and that the
// caller's annotation maps are left as they were.
func TestAppImageLayers(t *testing.T) {
	base := baseWithEnv(t)
	added := randomLayers(t, 3)
	img, err := assemble.App(base, assemble.AppConfig{Layers: added, Created: created, Root: "opt/comfy"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 5 {
		t.Fatalf("%d layers, want 2 of the base and 3", len(m.Layers))
	}
	baseM, _ := base.Manifest()
	for i := range 2 {
		if m.Layers[i].Digest != baseM.Layers[i].Digest {
			t.Errorf("layer %d is not the base's", i)
		}
	}
	cf, _ := img.ConfigFile()
	for i, l := range added {
		d, _ := l.Layer.Digest()
		got := m.Layers[2+i]
		if got.Digest != d {
			t.Errorf("layer %d: %s, want %s", 2+i, got.Digest, d)
		}
		if got.Annotations[assemble.AnnKey] != l.Key || got.Annotations[assemble.AnnPart] != "node" {
			t.Errorf("layer %d annotations %v", 2+i, got.Annotations)
		}
		if _, ok := l.Annotations[assemble.AnnKey]; ok {
			t.Error("the caller's annotations were changed")
		}
		h := cf.History[len(cf.History)-3+i]
		if h.CreatedBy != l.History || !h.Created.Time.Equal(created) {
			t.Errorf("history %d: %+v", i, h)
		}
	}
}

// TestModelsImage checks the models image: only the model layers on an
// empty image, the base's platform, and the models named in its labels
// and manifest annotations.
func TestModelsImage(t *testing.T) {
	layers := randomLayers(t, 2)
	img, err := assemble.Models(assemble.ModelsConfig{Layers: layers, Created: created, OS: "linux", Architecture: "arm64",
		VersionID: "demo", SpecDigest: "sha256:spec", Models: map[string]string{"vae/x.safetensors": "123", "unet/y.gguf": "456"}})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	cf, _ := img.ConfigFile()
	if len(m.Layers) != 2 {
		t.Fatalf("%d layers, want 2", len(m.Layers))
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	for k, v := range map[string]string{assemble.AnnPart: "models", assemble.AnnModelPfx + "vae/x.safetensors": "123",
		assemble.AnnModelPfx + "unet/y.gguf": "456", specs.AnnotationVersion: "demo"} {
		if cf.Config.Labels[k] != v || m.Annotations[k] != v {
			t.Errorf("%s: label %q, annotation %q, want %q", k, cf.Config.Labels[k], m.Annotations[k], v)
		}
	}
}

// TestAssembleIsDeterministic checks the same inputs give the same
// manifest digest.
func TestAssembleIsDeterministic(t *testing.T) {
	layers := randomLayers(t, 2)
	c := assemble.AppConfig{Layers: layers, Created: created, Root: "opt/comfy", Env: map[string]string{"B": "1", "A": "2", "C": "3"},
		Models: map[string]string{"a": "1", "b": "2"}}
	a, err := assemble.App(empty.Image, c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := assemble.App(empty.Image, c)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("digests %s and %s from the same inputs", da, db)
	}
}
