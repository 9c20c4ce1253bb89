package layers_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/realize"
)

// baseBlobGETs counts, per digest, the blobs of repository base/small
// the registry served.
func baseBlobGETs(reqs []testsupport.Request) map[string]int {
	n := map[string]int{}
	for _, q := range reqs {
		if q.Method == http.MethodGet && q.Status == http.StatusOK && strings.HasPrefix(q.Path, "/v2/base/small/blobs/sha256:") {
			n[strings.TrimPrefix(q.Path, "/v2/base/small/blobs/")]++
		}
	}
	return n
}

// TestBaseLayersArePulledOnce: a build from a registry base with a fresh
// cache and two local outputs (an OCI layout and a tarball) pulls each
// base layer at most once; a second build pulls none; a cached base layer
// damaged on disk is detected and pulled again, and the outputs still
// get its true bytes.
func TestBaseLayersArePulledOnce(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	base := registryBase(t, reg)
	ref, err := name.ParseReference(base)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	baseLayers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cache := testsupport.TempDir(t)
	outputs := func() []string {
		dir := testsupport.TempDir(t)
		return []string{"oci:" + filepath.Join(dir, "oci") + ":t", "tar:" + filepath.Join(dir, "image.tar")}
	}
	layerGETs := func(reqs []testsupport.Request) map[string]int {
		all := baseBlobGETs(reqs)
		n := map[string]int{}
		for _, l := range baseLayers {
			d, _ := l.Digest()
			if all[d.String()] > 0 {
				n[d.String()] = all[d.String()]
			}
		}
		return n
	}
	checkLayout := func(outs []string) {
		t.Helper()
		dir := strings.TrimSuffix(strings.TrimPrefix(outs[0], "oci:"), ":t")
		for _, l := range baseLayers {
			d, _ := l.Digest()
			data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", d.Hex))
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != d.Hex {
				t.Errorf("the layout's base layer %s holds other bytes", d)
			}
		}
	}

	outs := outputs()
	_, reqs := runnerTo(t, v, reg, base, cache, outs)
	for d, n := range baseBlobGETs(reqs) {
		if n > 1 {
			t.Errorf("first build: base blob %s pulled %d times", d, n)
		}
	}
	if len(layerGETs(reqs)) != len(baseLayers) {
		t.Errorf("first build pulled %v, want each of the %d base layers once", layerGETs(reqs), len(baseLayers))
	}
	checkLayout(outs)

	outs = outputs()
	if _, reqs = runnerTo(t, v, reg, base, cache, outs); len(layerGETs(reqs)) != 0 {
		t.Errorf("second build pulled base layers %v", layerGETs(reqs))
	}
	checkLayout(outs)

	// Damage one cached base layer: it is pulled again, once.
	d, _ := baseLayers[0].Digest()
	cached := filepath.Join(layers.BaseBlobsDir(cache), "sha256", d.Hex)
	flipByte(t, cached, 10)
	outs = outputs()
	_, reqs = runnerTo(t, v, reg, base, cache, outs)
	if got := layerGETs(reqs); len(got) != 1 || got[d.String()] != 1 {
		t.Errorf("after damaging %s: pulled %v, want it alone, once", d, got)
	}
	checkLayout(outs)

	// cache du accounts for them; prune removes them (no lock names a base).
	locks, err := realize.ReadCacheLocks(cache)
	if err != nil {
		t.Fatal(err)
	}
	u, err := realize.ScanCache(cache, locks)
	if err != nil {
		t.Fatal(err)
	}
	var want, got int64
	for _, l := range baseLayers {
		n, _ := l.Size()
		want += n
	}
	for _, e := range u.Entries {
		if e.Kind == realize.KindBaseLayer {
			got += e.Size
		}
	}
	if got != want {
		t.Errorf("cache du: base layers %d bytes, want %d", got, want)
	}
	if _, err := realize.PruneCache(cache, locks, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cached); !os.IsNotExist(err) {
		t.Errorf("prune left %s: %v", cached, err)
	}
}
