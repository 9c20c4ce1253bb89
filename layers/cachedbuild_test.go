package layers_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/plan"
)

// TestDamagedPackedLayerIsRepacked damages every packed layer in the cache
// (same size, one byte flipped) and pushes the next build to a registry
// that has none of them: the damaged blobs are noticed, named in the log and
// repacked, and the registry accepts every blob (no DIGEST_INVALID).
func TestDamagedPackedLayerIsRepacked(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := testsupport.TempDir(t)
	build(t, v, base, cache, nil)
	blobs, _ := filepath.Glob(filepath.Join(cache, "layers", "??", "*.blob"))
	if len(blobs) == 0 {
		t.Fatal("no packed layer in the cache")
	}
	for _, b := range blobs {
		testsupport.FlipByte(t, b, 40)
	}
	var log bytes.Buffer
	res := build(t, v, base, cache, func(o *layers.BuildOptions) { o.Log = &log })
	for _, p := range res.Parts {
		if p.Kind != "model" && p.Kind != "base" && p.Action != plan.Pack {
			t.Errorf("damaged %s %s was reused", p.Kind, p.Name)
		}
	}
	if n := strings.Count(log.String(), "changed on disk"); n < len(blobs) {
		t.Errorf("%d damaged layers named in the log, want %d:\n%s", n, len(blobs), log.String())
	}
	reg := testsupport.NewRegistry(t)
	out, err := layers.ParseLocation(reg.Host + "/comfy/demo:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.Write(context.Background(), res, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatalf("push after the cache was damaged: %v", err)
	}
}

// TestBitRotInACachedLayerIsCaught damages packed layers without moving
// their mtime (bit rot): writing them fails naming the damaged layer
// instead of leaving a bad blob in an OCI layout, and the next build
// repacks it so every blob of the layout matches its digest.
func TestBitRotInACachedLayerIsCaught(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := testsupport.TempDir(t)
	build(t, v, base, cache, nil)
	blobs, _ := filepath.Glob(filepath.Join(cache, "layers", "??", "*.blob"))
	for _, b := range blobs {
		fi, _ := os.Stat(b)
		testsupport.FlipByte(t, b, 40)
		os.Chtimes(b, fi.ModTime(), fi.ModTime())
	}
	dir := filepath.Join(testsupport.TempDir(t), "layout")
	out, err := layers.ParseLocation("oci:" + dir + ":demo")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res := build(t, v, base, cache, nil)
	err = layers.Write(ctx, res, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "is damaged") {
		t.Fatalf("writing damaged cached layers: %v, want an error naming a damaged layer", err)
	}
	os.RemoveAll(dir)
	res = build(t, v, base, cache, nil)
	if err := layers.Write(ctx, res, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard}); err != nil {
		t.Fatalf("the run after: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != filepath.Base(f) {
			t.Errorf("blob %s does not match its digest", filepath.Base(f))
		}
	}
}
