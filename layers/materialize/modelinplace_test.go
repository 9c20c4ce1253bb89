package materialize_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/fanout"
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/realize/models"
)

// A user's file read in place: the digest computed from the one read (the
// Observe of the sha256 read) is the layer's, is remembered with the
// file's stamp, and is not trusted once the file is rewritten, even with
// its size and mtime put back (its ctime moved). Streaming the layer then
// fails at once, naming the file, before a byte is sent.
func TestInPlaceModelFileDigestAndChange(t *testing.T) {
	dir := testsupport.TempDir(t)
	file := filepath.Join(dir, "mine.safetensors")
	content := make([]byte, 1<<20+333)
	rand.Read(content)
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	modTime := time.Unix(0, 0)
	before, err := models.StampFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := materialize.NewModelLayerDigest("checkpoints/mine.safetensors", modTime)
	w, done := d.Observe(int64(len(content)))
	fileHash := sha256.New()
	if _, err := fanout.Copy(bytes.NewReader(content), fileHash, w); err != nil {
		t.Fatal(err)
	}
	sha := hex.EncodeToString(fileHash.Sum(nil))
	done(sha)
	mf := materialize.ModelFile{File: file, Path: "checkpoints/mine.safetensors", SHA256: sha, InPlace: true}
	if err := d.Remember(dir, mf, before); err != nil {
		t.Fatal(err)
	}
	if _, ok := materialize.KnownModelFile(dir, mf, modTime); !ok {
		t.Fatal("the digest of an unchanged file is not known")
	}
	l, err := materialize.NewModelGroupLayer(dir, []materialize.ModelFile{mf}, modTime)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(readStream(t, l.Uncompressed))
	if got, _ := l.Digest(); got.Hex != hex.EncodeToString(sum[:]) {
		t.Fatalf("the observed digest %s is not the layer stream's sha256:%x", got, sum)
	}

	fi, _ := os.Stat(file)
	other := append([]byte{content[0] ^ 0xff}, content[1:]...)
	if err := os.WriteFile(file, other, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(file, fi.ModTime(), fi.ModTime())
	if _, ok := materialize.KnownModelFile(dir, mf, modTime); ok {
		t.Fatal("a rewritten file (size and mtime put back) is still taken as digested")
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	var changed *materialize.ChangedError
	if !errors.As(err, &changed) || changed.File != file || n > 2048 {
		t.Fatalf("streaming the layer of a changed file: %d bytes, %v; want a ChangedError naming %s before the file's bytes", n, err, file)
	}
	if _, err := materialize.NewModelGroupLayer(dir, []materialize.ModelFile{mf}, modTime); err == nil {
		t.Fatal("a layer was made of a file whose bytes are not the pinned ones")
	}
}

// The unchecked stream of a model layer (for destinations that hash what
// they receive) gives the layer's bytes, and still fails, naming the file,
// when the file is written while it is read: the stamp is checked again
// at the file's end.
func TestUncheckedModelStreamSeesAWriteDuringTheRead(t *testing.T) {
	dir := testsupport.TempDir(t)
	file := filepath.Join(dir, "mine.safetensors")
	content := make([]byte, 4<<20)
	rand.Read(content)
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	mf := materialize.ModelFile{File: file, Path: "checkpoints/mine.safetensors", SHA256: hex.EncodeToString(sum[:]), InPlace: true}
	l, err := materialize.NewModelGroupLayer(dir, []materialize.ModelFile{mf}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := l.Digest(); d.Hex != fmt.Sprintf("%x", sha256.Sum256(readStream(t, l.CompressedUnchecked))) {
		t.Fatalf("the unchecked stream is not the layer's bytes (digest %s)", d)
	}

	rc, err := l.CompressedUnchecked()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, 1<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.WriteAt([]byte{content[3<<20] ^ 0xff}, 3<<20) // ahead of the reader: the stream would carry it
	f.Close()
	os.Chtimes(file, fi.ModTime(), fi.ModTime())
	_, err = io.Copy(io.Discard, rc)
	var changed *materialize.ChangedError
	if !errors.As(err, &changed) || changed.File != file {
		t.Fatalf("a file written while its layer streamed: %v; want a ChangedError naming %s", err, file)
	}
}

// readStream reads the whole stream open gives.
func readStream(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
