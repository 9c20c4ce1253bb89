package layers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

// localModelVersion is the fixture's version with one file:// model (the
// user's own file) instead of the hub's.
func localModelVersion(t *testing.T, size int) (*testsupport.Version, string, []byte) {
	t.Helper()
	v := testsupport.NewVersion(t)
	content := make([]byte, size)
	rand.Read(content)
	file := filepath.Join(v.Dir, "my models", "local.safetensors")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf(`{"schema_version": 2, "version_id": "demo", "comfy": {"repo": %q},
  "models": [{"source": %q, "target_subdir": "checkpoints"}]}`, v.Core.FileURL(), "file://"+file)
	if err := os.WriteFile(v.SpecFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return v, file, content
}

func buildErr(t *testing.T, v *testsupport.Version, base, cache string, mod func(*layers.BuildOptions)) (*layers.Result, error) {
	t.Helper()
	o := layers.BuildOptions{Options: realize.Options{CacheDir: cache}, Base: base, WheelsDir: v.Wheels,
		LookupEnv: func(string) (string, bool) { return "", false }, Getenv: func(string) string { return "" }}
	if mod != nil {
		mod(&o)
	}
	return layers.Build(context.Background(), load(t, v), o)
}

// A build reads a file:// model where it lies: the model store is not
// written, and the layer it pushes is the digest the image names, holding
// the file's bytes (read back from the registry).
func TestFileModelIsReadInPlaceAndPushedAsDigested(t *testing.T) {
	v, _, content := localModelVersion(t, 700_001)
	cache := testsupport.TempDir(t)
	reg := testsupport.NewRegistry(t)
	out, err := layers.ParseLocation(reg.Host + "/comfy/demo:v1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := buildErr(t, v, testsupport.SyntheticBase(t), cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := filepath.Glob(filepath.Join(cache, "models", "*", "*"))
	if len(stored) > 0 {
		t.Errorf("the build wrote the model store for a file:// model: %v", stored)
	}
	sum := sha256.Sum256(content)
	if len(res.Lock.Models) != 1 || res.Lock.Models[0].SHA256 != hex.EncodeToString(sum[:]) || res.Lock.Models[0].Size != int64(len(content)) {
		t.Fatalf("lock models %+v, want the file's sha256 and size", res.Lock.Models)
	}
	if err := layers.Write(context.Background(), res, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, p := range res.Parts {
		if p.Kind != "model" {
			continue
		}
		found = true
		d, _ := p.Layer.Digest()
		ref, err := name.NewDigest(reg.Host+"/comfy/demo@"+d.String(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		l, err := remote.Layer(ref)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		blob, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(blob)
		if hex.EncodeToString(got[:]) != d.Hex {
			t.Fatalf("the uploaded blob hashes to %x, the image names %s", got, d)
		}
		tr := tar.NewReader(bytes.NewReader(blob))
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				t.Fatal("the uploaded model layer lacks checkpoints/local.safetensors")
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name == "checkpoints/local.safetensors" {
				data, _ := io.ReadAll(tr)
				if !bytes.Equal(data, content) {
					t.Fatal("the uploaded model layer holds other bytes than the file")
				}
				break
			}
		}
	}
	if !found {
		t.Fatal("no model part")
	}
}

// A file:// model rewritten after the lock pinned it (same size, other
// bytes, even its mtime put back) is refused, naming the model, whether
// the layer cache remembers its digest or not.
func TestFileModelChangedSinceLockIsRefused(t *testing.T) {
	v, file, content := localModelVersion(t, 300_000)
	base := testsupport.SyntheticBase(t)
	cache := testsupport.TempDir(t)
	if _, err := buildErr(t, v, base, cache, nil); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(file)
	other := append([]byte{content[0] ^ 0xff}, content[1:]...)
	if err := os.WriteFile(file, other, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(file, fi.ModTime(), fi.ModTime())
	for _, c := range []struct{ name, cache string }{{"warm layer cache", cache}, {"lock only", ""}} {
		cacheDir := c.cache
		if cacheDir == "" {
			// The same lock in a cache that never digested the model.
			cacheDir = testsupport.TempDir(t)
			lock, err := os.ReadFile(versions.LockPath(cache, "demo"))
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Dir(versions.LockPath(cacheDir, "demo")), 0o755)
			if err := os.WriteFile(versions.LockPath(cacheDir, "demo"), lock, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := buildErr(t, v, base, cacheDir, nil)
		if err == nil || !strings.Contains(err.Error(), "checkpoints/local.safetensors") || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: a changed file:// model was not refused naming it: %v", c.name, err)
		}
	}
}

// The models image's blobs go up while the app image is still being made
// (BuildOptions.Early, Outputs.EarlyUploads): when the build returns they
// are in the registry and no tag has moved; Write then moves both tags
// and uploads no blob twice.
func TestModelsBlobsUploadWhileTheAppIsMade(t *testing.T) {
	v, _, _ := localModelVersion(t, 400_000)
	reg := testsupport.NewRegistry(t)
	out, err := layers.ParseLocation(reg.Host + "/comfy/demo:v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	outs, err := layers.NewOutputs([]layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := outs.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	rec := &earlyRecorder{EarlyBlobs: outs.EarlyUploads(ctx, nil)}
	res, err := buildErr(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), func(o *layers.BuildOptions) {
		o.PushTo = []layers.Location{out}
		o.Early = rec
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := outs.WaitEarly(); err != nil {
		t.Fatal(err)
	}
	early := rec.layers
	if len(early) != 1 || !rec.image {
		t.Fatalf("Early heard of %d model layers (and the image: %v), want 1 and the image", len(early), rec.image)
	}
	_, uploaded := reg.Uploads()
	if !slices.Contains(uploaded, early[0]) {
		t.Fatalf("the model layer %s was not uploaded while the build ran (uploads %v)", early[0], uploaded)
	}
	for _, tag := range []string{"v1", "v1-models"} {
		ref, _ := name.NewTag(reg.Host+"/comfy/demo:"+tag, name.Insecure)
		if _, err := remote.Head(ref); err == nil {
			t.Fatalf("tag %s moved before both images were complete", tag)
		}
	}
	if err := outs.Write(ctx, res); err != nil {
		t.Fatal(err)
	}
	n, all := reg.Uploads()
	seen := map[string]bool{}
	for _, d := range all {
		if seen[d] {
			t.Errorf("blob %s uploaded twice", d)
		}
		seen[d] = true
	}
	models, err := remote.Image(mustTag(t, reg.Host+"/comfy/demo:v1-models"))
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, models) != digestOf(t, res.Models) || n == 0 {
		t.Fatal("the models tag does not name the built models image")
	}
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	ref, err := name.NewTag(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// earlyRecorder notes what a build told its EarlyBlobs.
type earlyRecorder struct {
	layers.EarlyBlobs
	mu     sync.Mutex
	layers []string
	image  bool
}

func (r *earlyRecorder) ModelLayer(p plan.Part) {
	d, _ := p.Layer.Digest()
	r.mu.Lock()
	r.layers = append(r.layers, d.String())
	r.mu.Unlock()
	r.EarlyBlobs.ModelLayer(p)
}

func (r *earlyRecorder) ModelsImage(img v1.Image) {
	r.image = true
	r.EarlyBlobs.ModelsImage(img)
}

// A file:// model that no lock pins is read by every build: the image at
// the push reference records its sha256 from when it was built, but the
// file may have changed since (same size), and the result must be what
// an OCI-layout-only build of the same spec gives (review of issue 9).
func TestUnpinnedFileModelIsReadNotTakenFromTheRegistry(t *testing.T) {
	v, file, content := localModelVersion(t, 100_003)
	reg := testsupport.NewRegistry(t)
	base := registryBase(t, reg)
	first, _ := runner(t, v, reg, base, testsupport.TempDir(t))
	if got, want := first.Lock.Models[0].SHA256, sha256Hex(content); got != want {
		t.Fatalf("first build pinned %s, want %s", got, want)
	}

	changed := slices.Clone(content)
	for i := range 9 {
		changed[i] ^= 0xff
	}
	if err := os.WriteFile(file, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	// A fresh runner (no lock, no cache) pushing to the same reference.
	again, _ := runner(t, v, reg, base, testsupport.TempDir(t))
	if got, want := again.Lock.Models[0].SHA256, sha256Hex(changed); got != want {
		t.Fatalf("the rebuild took sha256 %s (the registry's record of the old file); the file's bytes are %s", got, want)
	}
	layoutOnly, err := buildErr(t, v, base, testsupport.TempDir(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := again.Lock.Models[0].SHA256, layoutOnly.Lock.Models[0].SHA256; a != b {
		t.Fatalf("the registry build pinned %s, a build without a registry %s", a, b)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// A file:// model edited since the lock pinned it is refused naming it
// (as TestFileModelChangedSinceLockIsRefused) also when the push
// reference's image lists the lock's layer: the registry's knowledge of
// the old bytes must not stand for a file that is no longer them, or the
// image would silently keep the old model.
func TestEditedFileModelIsNotTakenFromTheRegistry(t *testing.T) {
	v, file, content, base, cache, push := pushedLocalModel(t)
	if res, err := buildErr(t, v, base, cache, push); err != nil || res.Parts[len(res.Parts)-1].Action != plan.ReuseRegistry {
		t.Fatalf("unchanged rebuild: %v; want the model's layer from the registry", err)
	}
	edited := slices.Clone(content)
	edited[1000] ^= 0xff
	if err := os.WriteFile(file, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := buildErr(t, v, base, cache, push)
	if err == nil || !strings.Contains(err.Error(), "checkpoints/local.safetensors") || !strings.Contains(err.Error(), file) {
		t.Fatalf("rebuild after the model file was edited: %v; want it refused naming the model and the file", err)
	}
}

// pushedLocalModel is a version with a file:// model pushed once to a
// registry by a runner with cache: its file and bytes, the registry's
// base, and the option that makes a build push to the same reference.
func pushedLocalModel(t *testing.T) (v *testsupport.Version, file string, content []byte, base, cache string, push func(*layers.BuildOptions)) {
	t.Helper()
	v, file, content = localModelVersion(t, 200_003)
	reg := testsupport.NewRegistry(t)
	base = registryBase(t, reg)
	cache = testsupport.TempDir(t)
	runner(t, v, reg, base, cache)
	out, err := layers.ParseLocation(reg.Host + "/comfy/demo:v1")
	if err != nil {
		t.Fatal(err)
	}
	return v, file, content, base, cache, func(o *layers.BuildOptions) { o.PushTo = []layers.Location{out} }
}
