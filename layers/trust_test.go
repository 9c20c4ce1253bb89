package layers_test

import (
	"context"
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
