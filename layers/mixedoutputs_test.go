package layers_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/plan"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// layoutBlobs are the blob files of an OCI layout, by digest hex, each
// checked against its name.
func layoutBlobs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*"))
	out := map[string]bool{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(h.Sum(nil)) != filepath.Base(f) {
			t.Errorf("layout blob %s does not match its digest", filepath.Base(f))
		}
		out[filepath.Base(f)] = true
	}
	return out
}

func packedParts(res *layers.Result) []string {
	var out []string
	for _, p := range res.Parts {
		if p.Action == plan.Pack {
			out = append(out, p.Label())
		}
	}
	return out
}

// packedInCache are the layers packed into a layer cache.
func packedInCache(cache string) []string {
	blobs, _ := filepath.Glob(filepath.Join(cache, "layers", "??", "*.blob"))
	return blobs
}

// TestMixedOutputsReuseWhatEachOutputHolds builds a version to a registry
// and an OCI layout at once. A fresh runner (empty cache) rebuilding it
// unchanged to both packs nothing, downloads no model, uploads nothing
// and writes nothing new to the layout; with one node moved it packs that
// node's layer alone, uploads 2 blobs (layer and app config) and writes
// the new blobs (layer, config, manifest) to the layout.
func TestMixedOutputsReuseWhatEachOutputHolds(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	base := pushBase(t, reg, testsupport.SyntheticBase(t), "mixed")
	layout := filepath.Join(t.TempDir(), "layout")
	outs := []string{reg.Host + "/comfy/demo:v1", "oci:" + layout + ":v1"}
	first, _ := runnerTo(t, v, reg, base, t.TempDir(), outs)
	before := layoutBlobs(t, layout)

	noWheels := func(o *layers.BuildOptions) { o.WheelsDir = t.TempDir() }
	cache := t.TempDir()
	fresh, reqs := runnerTo(t, v, reg, base, cache, outs, noWheels)
	if p := packedParts(fresh); len(p) != 0 {
		t.Errorf("fresh unchanged rebuild packed %v", p)
	}
	for _, p := range fresh.Parts {
		if p.Action != plan.ReuseRegistry {
			t.Errorf("%s: %s, want %s (both outputs hold it)", p.Label(), p.Action, plan.ReuseRegistry)
		}
	}
	if p := packedInCache(cache); len(p) != 0 {
		t.Errorf("writing the outputs packed %d layers: %v", len(p), p)
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "models", "*", "*")); len(m) != 0 {
		t.Errorf("models downloaded: %v", m)
	}
	if up := blobUploads(reqs); len(up) != 0 {
		t.Errorf("fresh unchanged rebuild uploaded %v", up)
	}
	if after := layoutBlobs(t, layout); len(after) != len(before) {
		t.Errorf("layout has %d blobs, had %d: nothing should be written", len(after), len(before))
	}
	if digestOf(t, fresh.App) != digestOf(t, first.App) || digestOf(t, fresh.Models) != digestOf(t, first.Models) {
		t.Fatal("the fresh rebuild made other digests")
	}

	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"nodes.py": "FIXED = True\n"})
	moved, reqs := runnerTo(t, v, reg, base, t.TempDir(), outs, noWheels)
	if p := packedParts(moved); !slices.Equal(p, []string{"node ComfyUI-KJNodes"}) {
		t.Errorf("packed %v, want the moved node only", p)
	}
	if up := blobUploads(reqs); len(up) != 2 {
		t.Errorf("uploaded %d blobs (%v), want 2", len(up), up)
	}
	after := layoutBlobs(t, layout)
	var added []string
	for d := range after {
		if !before[d] {
			added = append(added, "sha256:"+d)
		}
	}
	node := ""
	for _, p := range moved.Parts {
		if p.Action == plan.Pack {
			d, _ := p.Layer.Digest()
			node = d.String()
		}
	}
	cfg, _ := moved.App.ConfigName()
	want := []string{node, cfg.String(), digestOf(t, moved.App)}
	slices.Sort(added)
	slices.Sort(want)
	if !slices.Equal(added, want) {
		t.Errorf("layout got blobs %v, want the node layer, the app config and manifest %v", added, want)
	}
	img, err := layers.ReadImage(layers.Location{Kind: layers.OCILayout, Path: layout, Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, img) != digestOf(t, moved.App) {
		t.Error("the layout's v1 is not the new app image")
	}
}

// TestLazyLayersPackWhenAWriterAsks builds on a fresh runner to a registry
// that holds every layer (nothing is packed or downloaded), then writes
// the same result to a new OCI layout: each lazy layer is packed (or its
// model downloaded) when the layout asks for its bytes, and every blob
// written has its digest.
func TestLazyLayersPackWhenAWriterAsks(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	base := pushBase(t, reg, testsupport.SyntheticBase(t), "lazy")
	runner(t, v, reg, base, t.TempDir())
	cache := t.TempDir()
	fresh, _ := runner(t, v, reg, base, cache)
	if p := packedParts(fresh); len(p) != 0 {
		t.Fatalf("fresh unchanged rebuild packed %v", p)
	}
	if p := packedInCache(cache); len(p) != 0 {
		t.Fatalf("pushing to a registry that holds every layer packed %v", p)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	out, err := layers.ParseLocation("oci:" + layout + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.Write(context.Background(), fresh, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatalf("writing lazy layers to a layout: %v", err)
	}
	blobs := layoutBlobs(t, layout) // each checked against its digest
	for _, img := range []v1.Image{fresh.App, fresh.Models} {
		for _, d := range layerDigests(t, img) {
			if !blobs[strings.TrimPrefix(d, "sha256:")] {
				t.Errorf("layer %s is not in the layout", d)
			}
		}
	}
	if n := len(packedInCache(cache)); n != 5 {
		t.Errorf("packed %d app layers on demand, want 5 (core, two nodes, venv, config)", n)
	}
}

// TestTarballOutputGetsEveryLayer checks a tarball beside a registry that
// holds every layer: a tarball holds nothing, so every app layer is
// packed (and reported so), and the tarball has every layer's bytes.
func TestTarballOutputGetsEveryLayer(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	base := pushBase(t, reg, testsupport.SyntheticBase(t), "tar")
	runner(t, v, reg, base, t.TempDir())
	tarFile := filepath.Join(t.TempDir(), "demo.tar")
	res, reqs := runnerTo(t, v, reg, base, t.TempDir(), []string{reg.Host + "/comfy/demo:v1", "tar:" + tarFile})
	for _, p := range res.Parts {
		if p.Kind != plan.Model && p.Action != plan.Pack {
			t.Errorf("%s: %s, want %s (a tarball needs its bytes)", p.Label(), p.Action, plan.Pack)
		}
	}
	if up := blobUploads(reqs); len(up) != 0 {
		t.Errorf("the registry held every layer, yet %v were uploaded", up)
	}
	img, err := layers.ReadImage(layers.Location{Kind: layers.Tarball, Path: tarFile})
	if err != nil {
		t.Fatal(err)
	}
	// A docker tarball has its own manifest; config and layers are ours.
	if got, want := layerDigests(t, img), layerDigests(t, res.App); !slices.Equal(got, want) {
		t.Errorf("the tarball's app layers are %v, built %v", got, want)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		d, _, err := v1.SHA256(rc)
		rc.Close()
		if want, _ := l.Digest(); err != nil || d != want {
			t.Errorf("tarball layer %s has bytes %s (%v)", want, d, err)
		}
	}
}
