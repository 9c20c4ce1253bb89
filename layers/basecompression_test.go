package layers_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/realize"
)

// rawLayer is a layer given by its stored bytes and its tar's digest.
type rawLayer struct {
	data []byte
	diff v1.Hash
	mt   types.MediaType
}

func (l rawLayer) Digest() (v1.Hash, error) {
	sum := sha256.Sum256(l.data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, nil
}
func (l rawLayer) DiffID() (v1.Hash, error) { return l.diff, nil }
func (l rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l rawLayer) Uncompressed() (io.ReadCloser, error) { panic("not read by a push") }
func (l rawLayer) Size() (int64, error)                 { return int64(len(l.data)), nil }
func (l rawLayer) MediaType() (types.MediaType, error)  { return l.mt, nil }

// A registry base is read through the blob cache (cachedLayer, gzip by
// klauspost's reader since 41c3562) whatever its layers' compression:
// gzip in one member or several, zstd, or none. Each gives the same facts
// (the numpy its bottom layer installs).
func TestRegistryBaseLayersOfEveryCompressionGiveTheFacts(t *testing.T) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	meta := []byte("Metadata-Version: 2.1\nName: numpy\nVersion: 1.26.0\n")
	tw.WriteHeader(&tar.Header{Name: "usr/lib/python3/dist-packages/numpy-1.26.0.dist-info/METADATA", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(meta))})
	tw.Write(meta)
	tw.Close()
	plain := tarBuf.Bytes()
	sum := sha256.Sum256(plain)
	diff := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}

	gz := func(parts ...[]byte) []byte {
		var out bytes.Buffer
		for _, p := range parts {
			zw := gzip.NewWriter(&out)
			zw.Write(p)
			zw.Close()
		}
		return out.Bytes()
	}
	var zs bytes.Buffer
	ze, _ := zstd.NewWriter(&zs)
	ze.Write(plain)
	ze.Close()
	cases := map[string]rawLayer{
		"gzip":           {gz(plain), diff, types.OCILayer},
		"gzip 2 members": {gz(plain[:700], plain[700:]), diff, types.OCILayer},
		"zstd":           {zs.Bytes(), diff, types.OCILayerZStd},
		"uncompressed":   {plain, diff, types.OCIUncompressedLayer},
	}
	reg := testsupport.NewRegistry(t)
	top := testsupport.SyntheticBaseImage(t, testsupport.SyntheticBase(t))
	tops, _ := top.Layers()
	cf, _ := top.ConfigFile()
	c := cf.DeepCopy()
	c.RootFS.DiffIDs, c.History = nil, nil
	for label, l := range cases {
		t.Run(label, func(t *testing.T) {
			img, err := mutate.ConfigFile(empty.Image, c)
			if err != nil {
				t.Fatal(err)
			}
			if img, err = mutate.AppendLayers(img, append([]v1.Layer{l}, tops...)...); err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(reg.Host+"/bases/b:"+map[string]string{"gzip": "gz", "gzip 2 members": "gz2", "zstd": "zstd", "uncompressed": "tar"}[label], name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			v := testsupport.NewVersion(t)
			cache := testsupport.TempDir(t)
			if _, err := layers.Build(context.Background(), load(t, v), layers.BuildOptions{
				Options: realize.Options{CacheDir: cache}, Base: ref.String(), WheelsDir: v.Wheels, Models: "skip",
				LookupEnv: func(string) (string, bool) { return "", false }, Getenv: func(string) string { return "" },
			}); err != nil {
				t.Fatal(err)
			}
			if blobs, _ := filepath.Glob(filepath.Join(layers.BaseBlobsDir(cache), "sha256", "*")); len(blobs) == 0 {
				t.Fatal("the base was not read through the blob cache")
			}
			metas, _ := filepath.Glob(filepath.Join(cache, "bases", "*.json"))
			if len(metas) != 1 {
				t.Fatalf("base facts cached: %v", metas)
			}
			data, _ := os.ReadFile(metas[0])
			var info layers.BaseInfo
			if err := json.Unmarshal(data, &info); err != nil || !info.HasPackage("numpy") {
				t.Errorf("facts of a base whose %s layer installs numpy: %s, %v", label, data, err)
			}
		})
	}
}
