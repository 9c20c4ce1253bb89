package layers_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/plan"
)

// bigBase pushes the synthetic base (python, glibc) under a 50 MB layer of
// random bytes to reg as base/big and returns its reference and the big
// layer's digest.
func bigBase(t *testing.T, reg *testsupport.Registry) (string, string) {
	t.Helper()
	img := testsupport.SyntheticBaseImage(t, testsupport.SyntheticBase(t))
	big, err := random.Layer(50<<20, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.Append(img, mutate.Addendum{Layer: big}); err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/base/big:latest"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, _ := big.Digest()
	return ref, d.String()
}

// runner is one CI run: probe the destination, build with cache, push.
// It returns the build and the registry requests the run made.
func runner(t *testing.T, v *testsupport.Version, reg *testsupport.Registry, base, cache string, mods ...func(*layers.BuildOptions)) (*layers.Result, []testsupport.Request) {
	t.Helper()
	return runnerTo(t, v, reg, base, cache, []string{reg.Host + "/comfy/demo:v1"}, mods...)
}

// runnerTo is one CI run writing to every output in outs.
func runnerTo(t *testing.T, v *testsupport.Version, reg *testsupport.Registry, base, cache string, outs []string, mods ...func(*layers.BuildOptions)) (*layers.Result, []testsupport.Request) {
	t.Helper()
	ctx := context.Background()
	var locs []layers.Location
	for _, o := range outs {
		loc, err := layers.ParseLocation(o)
		if err != nil {
			t.Fatal(err)
		}
		locs = append(locs, loc)
	}
	baseLoc, _ := layers.ParseLocation(base)
	start := len(reg.Requests())
	dests, err := layers.NewOutputs(locs, "demo", layers.WriteOptions{Log: io.Discard, MountFrom: []name.Repository{baseLoc.Ref.Context()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := dests.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	res := build(t, v, base, cache, func(o *layers.BuildOptions) {
		o.PushTo, o.Transports = locs, dests.Transports()
		for _, mod := range mods {
			mod(o)
		}
	})
	if err := dests.Write(ctx, res); err != nil {
		t.Fatal(err)
	}
	return res, reg.Requests()[start:]
}

// pulled sums the blob bytes the registry served to one run.
func pulled(reqs []testsupport.Request) int64 {
	var n int64
	for _, q := range reqs {
		if q.Method == http.MethodGet && q.Status == http.StatusOK && strings.Contains(q.Path, "/blobs/sha256:") {
			n += q.Bytes
		}
	}
	return n
}

func blobUploads(reqs []testsupport.Request) []string {
	var out []string
	for _, q := range reqs {
		if q.Method == http.MethodPut && strings.Contains(q.Path, "/blobs/uploads/") {
			out = append(out, q.Query)
		}
	}
	return out
}

// toDestination are the requests a push is measured by: /v2/ and the
// destination repository (reading the base is not the push's cost).
func toDestination(reqs []testsupport.Request) []testsupport.Request {
	var out []testsupport.Request
	for _, q := range reqs {
		if q.Path == "/v2/" || strings.HasPrefix(q.Path, "/v2/comfy/") {
			out = append(out, q)
		}
	}
	return out
}

// noManifestHEAD checks that a push did not ask again for a tag the
// build had just read (present or absent).
func noManifestHEAD(t *testing.T, reqs []testsupport.Request) {
	t.Helper()
	for _, q := range toDestination(reqs) {
		if q.Method == http.MethodHead && strings.Contains(q.Path, "/manifests/") {
			t.Errorf("%v: the build read this tag already", q)
		}
	}
}

func TestFreshRunnerPullsNoBaseLayer(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	base, bigDigest := bigBase(t, reg)

	// First build: the base is read once for its facts (its layers are
	// pulled), and never uploaded. (This registry keeps one blob store for
	// all repositories, so the push finds the base layer there; the mount
	// a per-repository registry needs is tested in layers/publish.)
	first, reqs := runner(t, v, reg, base, t.TempDir())
	firstPulled := pulled(reqs)
	noManifestHEAD(t, reqs)
	if firstPulled > 60<<20 {
		t.Errorf("first build pulled %d MB; the base (50 MB) should be read once", firstPulled>>20)
	}
	for _, q := range blobUploads(reqs) {
		if strings.Contains(q, strings.TrimPrefix(bigDigest, "sha256:")) {
			t.Errorf("the base layer was uploaded (%s)", q)
		}
	}

	// A fresh runner, unchanged version: no base layer pulled (the facts
	// are in the app image's config), nothing packed, nothing uploaded,
	// and the same digests.
	// No wheel is at hand: the venv's key comes from the Python set the
	// pushed image records, its layer from the registry.
	noWheels := func(o *layers.BuildOptions) { o.WheelsDir = t.TempDir() }
	fresh, reqs := runner(t, v, reg, base, t.TempDir(), noWheels)
	freshPulled, freshReqs := pulled(reqs), toDestination(reqs)
	noManifestHEAD(t, reqs)
	if freshPulled >= 5<<20 {
		t.Errorf("fresh unchanged rebuild pulled %d bytes, want < 5 MB", freshPulled)
	}
	if up := blobUploads(reqs); len(up) != 0 {
		t.Errorf("fresh unchanged rebuild uploaded %v", up)
	}
	for _, p := range fresh.Parts {
		if p.Action == plan.Pack {
			t.Errorf("%s %s packed", p.Kind, p.Name)
		}
	}
	if digestOf(t, fresh.App) != digestOf(t, first.App) || digestOf(t, fresh.Models) != digestOf(t, first.Models) {
		t.Fatal("a fresh runner built other digests")
	}
	// Nothing new to push: at most 3 requests per image (app and models),
	// the probe included.
	if d := toDestination(reqs); len(d) > 6 {
		t.Errorf("%d requests to push two unchanged images, want <= 6: %v", len(d), d)
	}

	// One node moved: that node's layer is packed, 2 blobs go up (the
	// layer and the app config), still no base layer pulled.
	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"nodes.py": "FIXED = True\n"})
	moved, reqs := runner(t, v, reg, base, t.TempDir(), noWheels)
	var packed []string
	for _, p := range moved.Parts {
		if p.Action == plan.Pack {
			packed = append(packed, p.Label())
		}
	}
	if len(packed) != 1 || packed[0] != "node ComfyUI-KJNodes" {
		t.Errorf("packed %v, want the moved node only", packed)
	}
	if up := blobUploads(reqs); len(up) != 2 {
		t.Errorf("uploaded %d blobs (%v), want 2", len(up), up)
	}
	// Only the new blobs are asked about: the others are listed by the
	// manifests the build read at the tags.
	heads := 0
	for _, q := range toDestination(reqs) {
		if q.Method == http.MethodHead && strings.Contains(q.Path, "/blobs/") {
			heads++
		}
	}
	if heads > 2 {
		t.Errorf("%d blob HEADs for 2 new blobs: %v", heads, toDestination(reqs))
	}
	if n := pulled(reqs); n >= 5<<20 {
		t.Errorf("fresh rebuild with a moved node pulled %d bytes, want < 5 MB", n)
	}
	t.Logf("first build pulled %d bytes; fresh unchanged: %d bytes pulled, %d requests (%v); moved: %d bytes pulled, %d blobs up",
		firstPulled, freshPulled, len(freshReqs), freshReqs, pulled(reqs), len(blobUploads(reqs)))
}

// pushBase writes the OCI-layout base at loc to reg as base/NAME.
func pushBase(t *testing.T, reg *testsupport.Registry, loc, repoName string) string {
	t.Helper()
	ref := reg.Host + "/base/" + repoName + ":latest"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, testsupport.SyntheticBaseImage(t, loc)); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestFactsFromTheImageGiveTheSameVenvAsReadingTheBase(t *testing.T) {
	v := testsupport.NewVersion(t)
	wheel := testsupport.BuildWheel(t, t.TempDir(), testsupport.Wheel{Name: "pip", Version: "23.0.1", Scripts: map[string]string{"pip": "pip:main"}})
	data, err := os.ReadFile(wheel)
	if err != nil {
		t.Fatal(err)
	}
	site := "usr/lib/python3/dist-packages/"
	local := testsupport.BaseWithFiles(t, testsupport.SyntheticBase(t), map[string]string{
		"usr/share/python-wheels/pip-23.0.1-py3-none-any.whl": string(data),
		site + "numpy/__init__.py":                            "__version__ = '1.26.0'\n",
		site + "numpy-1.26.0.dist-info/METADATA":              "Metadata-Version: 2.1\nName: numpy\nVersion: 1.26.0\n",
	})
	reg := testsupport.NewRegistry(t)
	base := pushBase(t, reg, local, "pip")
	testsupport.BuildWheel(t, v.Wheels, testsupport.Wheel{Name: "numpy", Version: "1.26.0"})
	v.WriteSpec(t, `"python": {"system_site_packages": true},`)
	runner(t, v, reg, base, t.TempDir())

	// A node's requirements change: a fresh runner must pack the venv. The
	// facts come from the pushed image; the pip wheel's bytes from the base.
	testsupport.BuildWheel(t, v.Wheels, testsupport.Wheel{Name: "delta", Version: "1.0"})
	v.Nodes["ComfyUI-GGUF"].Commit("needs delta and numpy", map[string]string{"requirements.txt": "beta>=1.0\ndelta\nnumpy\n"})
	fresh, _ := runner(t, v, reg, base, t.TempDir())
	var venv v1.Layer
	for _, p := range fresh.Parts {
		if p.Kind == "venv" && p.Action == plan.Pack {
			venv = p.Layer
		}
	}
	if venv == nil {
		t.Fatal("the venv was not packed though its requirements changed")
	}
	// The other layers are in the registry only: read the venv's own.
	only, err := mutate.AppendLayers(empty.Image, venv)
	if err != nil {
		t.Fatal(err)
	}
	fs := files(t, only)
	if _, ok := fs["opt/comfy/.venv/bin/pip"]; !ok {
		t.Error("venv lacks pip from the base's wheel")
	}
	if _, ok := fs["opt/comfy/.venv/lib/python3.11/site-packages/numpy/__init__.py"]; ok {
		t.Error("numpy was installed though the base has it (facts from the image lost the base's packages)")
	}
	// The same version built by reading the base itself: the same image.
	direct := build(t, v, base, t.TempDir(), nil)
	if digestOf(t, direct.App) != digestOf(t, fresh.App) {
		t.Error("facts from the image and facts read from the base give different app images")
	}
}

func TestCacheFromIsTheOnlyOtherImageTrusted(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	base, _ := bigBase(t, reg)
	runner(t, v, reg, base, t.TempDir()) // pushes comfy/demo:v1
	ctx := context.Background()
	buildTo := func(tag string, cacheFrom ...string) (*layers.Result, []testsupport.Request) {
		out, _ := layers.ParseLocation(reg.Host + "/comfy/demo:" + tag)
		start := len(reg.Requests())
		outs, err := layers.NewOutputs([]layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		if err := outs.Probe(ctx); err != nil {
			t.Fatal(err)
		}
		res := build(t, v, base, t.TempDir(), func(o *layers.BuildOptions) {
			o.PushTo, o.Transports, o.CacheFrom = []layers.Location{out}, outs.Transports(), cacheFrom
		})
		if err := outs.Write(ctx, res); err != nil {
			t.Fatal(err)
		}
		return res, reg.Requests()[start:]
	}
	// A new tag with --cache-from the old one: facts and layers from it.
	_, reqs := buildTo("v2", reg.Host+"/comfy/demo:v1")
	if n := pulled(reqs); n >= 5<<20 {
		t.Errorf("with --cache-from: pulled %d bytes, want < 5 MB", n)
	}
	if up := blobUploads(reqs); len(up) != 0 {
		t.Errorf("with --cache-from: uploaded %v", up)
	}
	// Without it, v1 is not read: the base is, and the layers are packed.
	res, reqs := buildTo("v3")
	if n := pulled(reqs); n < 50<<20 {
		t.Errorf("without --cache-from the base should be read; pulled %d bytes", n)
	}
	for _, p := range res.Parts {
		if p.Action == plan.ReuseRegistry {
			t.Errorf("%s %s taken from an image not named by --cache-from", p.Kind, p.Name)
		}
	}
}
