package layers_test

import (
	"context"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/versions"
)

// TestForgedLockLayerIsPackedNotReused: a committed lock whose layer
// entry for one node carries another node's digest (same key) must not
// make the build reuse that blob. The lock is a record; only an image at
// the push reference or --cache-from is trusted for layer keys, so a
// fresh runner pushing to a new tag packs the node and its image holds
// the node's true layer.
func TestForgedLockLayerIsPackedNotReused(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	base := registryBase(t, reg)
	lockFile := filepath.Join(testsupport.TempDir(t), "demo.lock.json")
	withLock := func(o *layers.BuildOptions) { o.LockFile = lockFile }
	first, _ := runnerTo(t, v, reg, base, testsupport.TempDir(t), []string{reg.Host + "/app/t1:v1"}, withLock)

	lock, err := versions.ReadLock(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	victim, donor := -1, -1
	for i, l := range lock.Layers {
		switch {
		case l.Part == "node gguf":
			victim = i
		case l.Part == "node ComfyUI-KJNodes":
			donor = i
		}
	}
	if victim < 0 || donor < 0 {
		t.Fatalf("lock layers lack the nodes: %+v", lock.Layers)
	}
	forged := lock.Layers[donor]
	lock.Layers[victim].Digest, lock.Layers[victim].DiffID, lock.Layers[victim].Size = forged.Digest, forged.DiffID, forged.Size
	if err := versions.WriteLock(lockFile, lock); err != nil {
		t.Fatal(err)
	}

	second, _ := runnerTo(t, v, reg, base, testsupport.TempDir(t), []string{reg.Host + "/app/t1:v2"},
		withLock, func(o *layers.BuildOptions) { o.Locked = true })
	for _, p := range second.Parts {
		if p.Kind == plan.Node && p.Name == "gguf" && p.Action != plan.Pack {
			t.Errorf("%s: %s, want packed (the lock's entry is not trusted)", p.Label(), p.Action)
		}
	}
	if got, want := layerDigests(t, second.App), layerDigests(t, first.App); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("layers from a forged lock:\n got %v\nwant %v", got, want)
	}
	ref, err := name.ParseReference(reg.Host + "/app/t1:v2")
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := remote.Image(ref, remote.WithContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, pushed) != digestOf(t, first.App) {
		t.Errorf("pushed %s, want the image of the true layers %s", digestOf(t, pushed), digestOf(t, first.App))
	}
}

// registryBase pushes the synthetic base to reg as base/small and returns
// its reference.
func registryBase(t *testing.T, reg *testsupport.Registry) string {
	t.Helper()
	img := testsupport.SyntheticBaseImage(t, testsupport.SyntheticBase(t))
	ref := reg.Host + "/base/small:latest"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestCacheFromAnotherRepositoryMountsItsLayers: a fresh runner pushing
// to another repository of the registry with --cache-from an image there
// packs nothing, downloads no model and uploads no layer: every layer the
// --cache-from images list under its key is mounted from their repository,
// and the pushed images hold exactly their layers.
func TestCacheFromAnotherRepositoryMountsItsLayers(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewScopedRegistry(t)
	base := registryBase(t, reg)
	lockFile := filepath.Join(testsupport.TempDir(t), "demo.lock.json")
	withLock := func(o *layers.BuildOptions) { o.LockFile = lockFile }
	from := reg.Host + "/comfy/t1:locked"
	first, _ := runnerTo(t, v, reg, base, testsupport.TempDir(t), []string{from}, withLock)
	hfBefore := len(v.HF.Requests())

	second, reqs := runnerTo(t, v, reg, base, testsupport.TempDir(t), []string{reg.Host + "/comfy/other:v1"}, withLock,
		func(o *layers.BuildOptions) { o.Locked, o.CacheFrom = true, []string{from} })
	for _, p := range second.Parts {
		if p.Action != plan.ReuseRegistry {
			t.Errorf("%s: %s, want reuse-registry (mounted from %s)", p.Label(), p.Action, from)
		}
	}
	if n := len(v.HF.Requests()) - hfBefore; n != 0 {
		t.Errorf("%d requests to the model host", n)
	}
	configs := map[string]bool{}
	for _, img := range []v1.Image{second.App, second.Models} {
		d, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		configs[d.String()] = true
	}
	mounts := 0
	for _, q := range reqs {
		if !strings.HasPrefix(q.Path, "/v2/comfy/other/blobs/uploads") {
			continue
		}
		if strings.Contains(q.Query, "mount=") && q.Status == http.StatusCreated {
			mounts++
		}
		if q.Method == http.MethodPut {
			d := strings.TrimPrefix(q.Query, "digest=")
			if !configs[strings.ReplaceAll(d, "%3A", ":")] {
				t.Errorf("uploaded a layer: %v", q)
			}
		}
	}
	if mounts == 0 {
		t.Error("no blob was mounted")
	}
	for _, c := range []struct {
		tag  string
		want v1.Image
	}{{"v1", first.App}, {"v1-models", first.Models}} {
		ref, err := name.ParseReference(reg.Host + "/comfy/other:" + c.tag)
		if err != nil {
			t.Fatal(err)
		}
		pushed, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := layerDigests(t, pushed), layerDigests(t, c.want); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s layers:\n got %v\nwant %v", ref, got, want)
		}
	}
}
