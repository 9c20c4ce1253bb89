package layers_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/realize"
)

// truncatedLayer is a gzip layer given by its bytes, which may end in the
// middle of its stream: a lying base, consistent with its own digest (a
// registry serves it), whose content cannot be read to its end.
type truncatedLayer struct{ data []byte }

func (l truncatedLayer) Digest() (v1.Hash, error) {
	sum := sha256.Sum256(l.data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, nil
}
func (l truncatedLayer) DiffID() (v1.Hash, error) {
	zr, err := gzip.NewReader(bytes.NewReader(l.data))
	if err != nil {
		return v1.Hash{}, err
	}
	h := sha256.New()
	io.Copy(h, zr) // a truncated layer claims the digest of what it has
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, nil
}
func (l truncatedLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l truncatedLayer) Uncompressed() (io.ReadCloser, error) {
	return gzip.NewReader(bytes.NewReader(l.data))
}
func (l truncatedLayer) Size() (int64, error)                { return int64(len(l.data)), nil }
func (l truncatedLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

// truncatedBase is the synthetic base (Python, glibc) on a bottom layer
// that holds a file, then the metadata of an installed numpy, cut in the
// middle of the file when truncated.
func truncatedBase(t *testing.T, truncated bool) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	filler := make([]byte, 256<<10)
	rand.Read(filler)
	meta := []byte("Metadata-Version: 2.1\nName: numpy\nVersion: 1.26.0\n")
	for _, f := range []struct {
		name string
		data []byte
	}{{"opt/filler.bin", filler}, {"usr/lib/python3/dist-packages/numpy-1.26.0.dist-info/METADATA", meta}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	tw.Close()
	zw.Close()
	cut := truncatedLayer{data: buf.Bytes()}
	if truncated {
		cut.data = cut.data[:len(cut.data)/2]
	}
	top := testsupport.SyntheticBaseImage(t, testsupport.SyntheticBase(t))
	tops, err := top.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := top.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.ConfigFile(emptyWith(t, cf), cf.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.AppendLayers(img, append([]v1.Layer{cut}, tops...)...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// emptyWith is an image with no layer and cf's platform.
func emptyWith(t *testing.T, cf *v1.ConfigFile) v1.Image {
	t.Helper()
	c := cf.DeepCopy()
	c.RootFS.DiffIDs = nil
	c.History = nil
	img, err := mutate.ConfigFile(empty.Image, c)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// A base layer that cannot be read (a blob missing from a local layout, a
// pull refused, a cached blob changed under the build, the build's
// context ended) makes reading the base's facts fail. go-containerregistry's
// mutate.Extract ends its tar stream cleanly before it reports an error met
// between two files, so the facts of a half-read base were taken as whole:
// here they lack the numpy the base installs, and they were cached under
// the base's digest for every later build (and labelled on its images).
func TestUnreadableBaseLayerFailsTheFacts(t *testing.T) {
	for _, cut := range []bool{false, true} {
		img := truncatedBase(t, cut)
		dir := filepath.Join(testsupport.TempDir(t), "oci")
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "base"})); err != nil {
			t.Fatal(err)
		}
		bottom, _ := img.Layers()
		d, _ := bottom[0].Digest()
		if !cut {
			// Read whole, the facts list numpy.
			info, err := layers.ReadBase(context.Background(), img, testsupport.TempDir(t))
			if err != nil || !info.HasPackage("numpy") {
				t.Fatalf("facts of the whole base: %+v, %v; want numpy listed", info.Packages, err)
			}
			if err := os.Remove(filepath.Join(dir, "blobs", d.Algorithm, d.Hex)); err != nil {
				t.Fatal(err)
			}
		}
		v := testsupport.NewVersion(t)
		cache := testsupport.TempDir(t)
		_, err = layers.Build(context.Background(), load(t, v), layers.BuildOptions{
			Options: realize.Options{CacheDir: cache}, Base: "oci:" + dir + ":base", WheelsDir: v.Wheels, Models: "skip",
			LookupEnv: func(string) (string, bool) { return "", false }, Getenv: func(string) string { return "" },
		})
		if err == nil || !strings.Contains(err.Error(), "--base") {
			t.Errorf("build on a base whose bottom layer cannot be read (truncated %v): %v; want an error naming --base", cut, err)
		}
		if cached, _ := filepath.Glob(filepath.Join(cache, "bases", "*.json")); len(cached) > 0 {
			t.Errorf("facts of a half-read base were cached (truncated %v): %v", cut, cached)
		}
	}
}
