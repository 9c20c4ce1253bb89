package materialize_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

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

// Gzip writers are reused from layer to layer (and packed side by side):
// a layer's bytes must not depend on what was packed before or beside it,
// and every layer must unpack to its own files. The contents span several
// 1 MB blocks, so a block tail or dictionary left over from another layer
// would show in the bytes.
func TestReusedGzipWritersGiveTheSameBytes(t *testing.T) {
	ctx := context.Background()
	contents := make([][]byte, 6)
	for i := range contents {
		var b bytes.Buffer
		for j := 0; b.Len() < 2<<20+i*300_000; j++ {
			fmt.Fprintf(&b, "layer %d line %d %x\n", i, j, sha256.Sum256([]byte{byte(i), byte(j), byte(j >> 8)}))
		}
		contents[i] = b.Bytes()
	}
	pack := func(c materialize.Cache, i int) v1.Hash {
		t.Helper()
		l, _, err := c.Build(ctx, materialize.Key("reuse", fmt.Sprint(i)), materialize.Gzip, materialize.TarOptions{}, func() ([]materialize.Entry, error) {
			return []materialize.Entry{materialize.BytesEntry("app/data.txt", 0o644, contents[i])}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("layer %d unpacks to no app/data.txt: %v", i, err)
			}
			if h.Name == "app/data.txt" {
				got, err := io.ReadAll(tr)
				if err != nil || !bytes.Equal(got, contents[i]) {
					t.Fatalf("layer %d unpacks to other bytes (%d of %d, %v)", i, len(got), len(contents[i]), err)
				}
				break
			}
		}
		d, _ := l.Digest()
		return d
	}
	alone := make([]v1.Hash, len(contents))
	for i := range contents {
		alone[i] = pack(materialize.Cache{Dir: testsupport.TempDir(t), Jobs: 1 + i%3}, i)
	}
	side := materialize.Cache{Dir: testsupport.TempDir(t)}
	got := make([]v1.Hash, len(contents))
	var wg sync.WaitGroup
	for i := len(contents) - 1; i >= 0; i-- {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = pack(side, i) }()
	}
	wg.Wait()
	for i := range contents {
		if got[i] != alone[i] {
			t.Errorf("layer %d: %s packed beside others, %s alone", i, got[i], alone[i])
		}
	}
}
