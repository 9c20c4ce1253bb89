package publish_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/publish"
)

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

// Every kind of fault once: the push retries through them and succeeds.
func TestPushRetriesThroughRegistryFaults(t *testing.T) {
	reg := testsupport.NewRegistry(t)
	proxy := testsupport.NewFaultProxy(t, reg.Host)
	img := randomImage(t, 4)
	ds := layerDigests(t, img)
	proxy.Inject(testsupport.Fault{Kind: testsupport.Status500, Times: 1, Method: http.MethodHead, PathContains: "/blobs/"})
	proxy.Inject(testsupport.Fault{Kind: testsupport.CutUpload, Times: 1, Method: http.MethodPatch, Digest: ds[1]})
	proxy.Inject(testsupport.Fault{Kind: testsupport.DigestInvalid, Times: 1, Method: http.MethodPut, Digest: ds[2]})
	proxy.Inject(testsupport.Fault{Kind: testsupport.Status503, Times: 2, Method: http.MethodPut, PathContains: "/manifests/"})
	p := publish.NewRegistry(repo(t, proxy.Host, "comfy/demo"), fastRetries)
	if _, err := p.Publish(context.Background(), img, "v1"); err != nil {
		t.Fatalf("push through faults: %v", err)
	}
	if n := proxy.Fired(); n != 5 {
		t.Errorf("%d faults fired, want 5", n)
	}
	got, err := remote.Image(repo(t, reg.Host, "comfy/demo").Tag("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); gd != digest(t, img) {
		t.Fatal("the registry holds another image")
	}
}

// A blob whose upload is always cut: five attempts, then an error naming
// the layer and the registry; the rerun uploads only what is missing.
func TestPushGivesUpNamingTheLayerAndRerunUploadsOnlyTheRest(t *testing.T) {
	reg := testsupport.NewRegistry(t)
	proxy := testsupport.NewFaultProxy(t, reg.Host)
	img := randomImage(t, 4)
	ds := layerDigests(t, img)
	names := map[string]string{ds[0]: "core ComfyUI", ds[1]: "node gguf", ds[2]: "venv", ds[3]: "config layer"}
	proxy.Inject(testsupport.Fault{Kind: testsupport.CutUpload, Times: 100, Method: http.MethodPatch, Digest: ds[1]})
	pub := func() error {
		p := publish.NewRegistry(repo(t, proxy.Host, "comfy/demo"), fastRetries, publish.WithJobs(1), publish.WithLayerNames(names))
		_, err := p.Publish(context.Background(), img, "v1")
		return err
	}
	err := pub()
	var le *publish.LayerError
	if !errors.As(err, &le) {
		t.Fatalf("push through a cut link: %v", err)
	}
	for _, want := range []string{"node gguf", ds[1], proxy.Host} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if n := proxy.Fired(); n != 5 {
		t.Errorf("%d attempts, want 5", n)
	}
	firstRun := len(proxy.Requests())
	uploaded := map[string]bool{}
	for _, d := range testsupport.BlobUploads(proxy.Requests()) {
		uploaded[d] = true
	}
	proxy.Clear()
	if err := pub(); err != nil {
		t.Fatal(err)
	}
	again := testsupport.BlobUploads(proxy.Requests()[firstRun:])
	for _, d := range again {
		if uploaded[d] {
			t.Errorf("the rerun uploaded %s again", d)
		}
	}
	all := len(ds) + 1 // and the config
	if len(uploaded)+len(again) != all {
		t.Errorf("%d blobs uploaded over both runs, want %d", len(uploaded)+len(again), all)
	}
	t.Logf("first run uploaded %d blobs, the rerun %d", len(uploaded), len(again))
}

// A blob whose local bytes are damaged fails at once (no retry can help),
// as damaged; so does one the registry rejects as DIGEST_INVALID every time.
func TestDamagedBlobIsReportedWithoutRetries(t *testing.T) {
	reg := testsupport.NewRegistry(t)
	proxy := testsupport.NewFaultProxy(t, reg.Host)
	file := filepath.Join(testsupport.TempDir(t), "layer.tar.gz")
	src, _ := random.Layer(8192, types.OCILayer)
	rc, _ := src.Compressed()
	data, _ := io.ReadAll(rc)
	os.WriteFile(file, data, 0o644)
	l, err := tarball.LayerFromFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xFF // same size, other bytes: a damaged cache file
	os.WriteFile(file, data, 0o644)
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	_, err = publish.NewRegistry(repo(t, proxy.Host, "comfy/demo"), fastRetries, publish.WithJobs(1)).Publish(context.Background(), img, "v1")
	var le *publish.LayerError
	if !errors.As(err, &le) || !le.Damaged() {
		t.Fatalf("push of damaged bytes: %v", err)
	}
	patches := 0
	for _, r := range proxy.Requests() {
		if r.Method == http.MethodPatch {
			patches++
		}
	}
	if patches > 2 {
		t.Errorf("damaged bytes were sent %d times", patches)
	}

	good := randomImage(t, 1)
	ds := layerDigests(t, good)
	proxy.Inject(testsupport.Fault{Kind: testsupport.DigestInvalid, Times: 100, Method: http.MethodPut, Digest: ds[0]})
	_, err = publish.NewRegistry(repo(t, proxy.Host, "comfy/other"), fastRetries).Publish(context.Background(), good, "v1")
	if !errors.As(err, &le) || !le.Damaged() || le.Digest.String() != ds[0] {
		t.Fatalf("push of a blob the registry always rejects: %v", err)
	}
}
