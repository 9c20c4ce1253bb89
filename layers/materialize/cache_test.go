package materialize_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/materialize"
)

// TestCacheDropForgetsALayer drops a packed layer by its digest, as push
// code does when a registry answers DIGEST_INVALID: the next build packs it
// again.
func TestCacheDropForgetsALayer(t *testing.T) {
	dir := testsupport.TempDir(t)
	c := materialize.Cache{Dir: dir}
	ctx := context.Background()
	entries := func() ([]materialize.Entry, error) {
		return []materialize.Entry{materialize.BytesEntry("app/x.txt", 0o644, []byte("hello\n"))}, nil
	}
	key := materialize.Key("drop-test")
	l, packed, err := c.Build(ctx, key, materialize.Gzip, materialize.TarOptions{}, entries)
	if err != nil || !packed {
		t.Fatalf("first build: packed %v, %v", packed, err)
	}
	d, _ := l.Digest()
	if _, ok := c.Lookup(key); !ok {
		t.Fatal("a packed layer is not found")
	}
	n, err := c.DropDigest(ctx, d)
	if err != nil || n != 1 {
		t.Fatalf("DropDigest: %d dropped, %v", n, err)
	}
	if _, ok := c.Lookup(key); ok {
		t.Fatal("a dropped layer is still found")
	}
	if _, packed, err := c.Build(ctx, key, materialize.Gzip, materialize.TarOptions{}, entries); err != nil || !packed {
		t.Fatalf("build after the drop: packed %v, %v", packed, err)
	}
	if err := c.Drop(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Lookup(key); ok {
		t.Fatal("Drop left the layer")
	}
}

// TestChangedModelFileIsNotTrusted edits a stored model file after its layer
// digest was remembered: the remembered digest is not used; the file is read
// again and, no longer the pinned file, is named in an error.
func TestChangedModelFileIsNotTrusted(t *testing.T) {
	dir := testsupport.TempDir(t)
	file := filepath.Join(dir, "blob")
	content := bytes.Repeat([]byte("weights!"), 10_000)
	os.WriteFile(file, content, 0o644)
	sum := sha256.Sum256(content)
	sha := hex.EncodeToString(sum[:])
	first, err := materialize.NewModelLayer(dir, file, "vae/x.safetensors", sha, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	testsupport.FlipByte(t, file, 100)
	_, err = materialize.NewModelLayer(dir, file, "vae/x.safetensors", sha, time.Unix(0, 0))
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("a changed model file gave a layer (error %v), want an error naming %s", err, file)
	}
	// Put back (a new mtime, the pinned bytes): its layer is the first one.
	testsupport.FlipByte(t, file, 100)
	again, err := materialize.NewModelLayer(dir, file, "vae/x.safetensors", sha, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := first.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Fatalf("digest %s after the file was restored, want %s", d2, d1)
	}
}
