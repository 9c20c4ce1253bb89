package models_test

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
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/versions"
)

// A file:// model is read where it lies: the sha256 is the file's, the
// observer sees every byte once, and nothing is written to the store.
func TestReadLocalReadsInPlaceAndWritesNoStore(t *testing.T) {
	content := randomBytes(t, 3<<20+17)
	src := filepath.Join(testsupport.TempDir(t), "local.safetensors")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	f := &models.Fetcher{Store: models.Store{Dir: filepath.Join(testsupport.TempDir(t), "models")}}
	var seen bytes.Buffer
	var doneSHA string
	res, err := f.ReadLocal(context.Background(), models.Request{Source: "file://" + src, Observe: func(size int64) (io.Writer, func(string)) {
		if size != int64(len(content)) {
			t.Errorf("observer told size %d, want %d", size, len(content))
		}
		return &seen, func(sha string) { doneSHA = sha }
	}})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	if res.SHA256 != want || res.Size != int64(len(content)) || res.Path != src || doneSHA != want {
		t.Fatalf("ReadLocal = %+v (observer done with %q), want sha %s size %d path %s", res, doneSHA, want, len(content), src)
	}
	if !bytes.Equal(seen.Bytes(), content) {
		t.Fatal("the observer saw other bytes than the file's")
	}
	if st, _ := models.StampFile(src); st != res.Stamp {
		t.Fatalf("stamp %+v, the file's is %+v", res.Stamp, st)
	}
	if _, err := os.Stat(f.Store.Dir); !os.IsNotExist(err) {
		left, _ := filepath.Glob(filepath.Join(f.Store.Dir, "*", "*"))
		t.Fatalf("the store was written for a file:// model read in place: %v", left)
	}
}

// A file whose bytes changed since they were pinned (same size, other
// bytes) is refused, naming the source and both sha256s.
func TestReadLocalRefusesAnotherFileThanPinned(t *testing.T) {
	src := filepath.Join(testsupport.TempDir(t), "m.safetensors")
	old := randomBytes(t, 4096)
	sum := sha256.Sum256(old)
	pinned := hex.EncodeToString(sum[:])
	changed := append([]byte{old[0] ^ 0xff}, old[1:]...)
	if err := os.WriteFile(src, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	f := &models.Fetcher{Store: models.Store{Dir: testsupport.TempDir(t)}}
	_, err := f.ReadLocal(context.Background(), models.Request{Source: "file://" + src, SHA256: pinned})
	if err == nil || !strings.Contains(err.Error(), src) || !strings.Contains(err.Error(), pinned) {
		t.Fatalf("a changed file:// model was not refused naming it and the pinned sha256: %v", err)
	}
	if _, err := f.ReadLocal(context.Background(), models.Request{Source: "https://example.invalid/m.safetensors"}); err == nil {
		t.Fatal("ReadLocal read a non-file source")
	}
}

// A lock is read from the cache or --lock FILE: its url for a model whose
// source is not a file must not make the fetch read a local file (and a
// refusal must not print that file's sha256). The pin still holds: the
// model comes from its source, or is refused there.
func TestLockURLDoesNotTurnADownloadIntoALocalRead(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	sha := hf.Add("o/r/m.bin", []byte("hub weights"))
	secret := filepath.Join(testsupport.TempDir(t), "id_ed25519")
	if err := os.WriteFile(secret, []byte("-----BEGIN OPENSSH PRIVATE KEY-----"), 0o600); err != nil {
		t.Fatal(err)
	}
	secretSum := sha256.Sum256([]byte("-----BEGIN OPENSSH PRIVATE KEY-----"))
	f := newFetcher(t, hf)
	m := versions.Model{Source: "hf://o/r/m.bin", TargetSubdir: "loras"}
	for _, pin := range []string{sha, hex.EncodeToString(secretSum[:])} {
		lock := &versions.Lock{Models: []versions.LockedModel{{Source: m.Source, Dest: m.Dest(), URL: "file://" + secret, SHA256: pin, Size: 11}}}
		got, err := models.FetchLocked(context.Background(), f, m, lock)
		if err == nil && got.SHA256 == hex.EncodeToString(secretSum[:]) {
			t.Fatalf("a lock's file:// url read %s for an hf:// model", secret)
		}
		if err != nil && (strings.Contains(err.Error(), hex.EncodeToString(secretSum[:])) && pin == sha || strings.Contains(err.Error(), "OPENSSH")) {
			t.Fatalf("the error tells of the local file: %v", err)
		}
		if _, has := f.Store.Has(hex.EncodeToString(secretSum[:])); has {
			t.Fatalf("the store took a copy of %s", secret)
		}
		if pin == sha && (err != nil || got.SHA256 != sha) {
			t.Fatalf("the pinned hub model: %+v, %v; want it fetched from its source", got, err)
		}
	}
}

// The lock's url of a file:// model does not move it to another file: the
// spec's path is read (and refused if it is not the pinned bytes).
func TestLockURLDoesNotMoveAFileModel(t *testing.T) {
	dir := testsupport.TempDir(t)
	mine, other := filepath.Join(dir, "mine.safetensors"), filepath.Join(dir, "other")
	os.WriteFile(mine, []byte("my weights"), 0o644)
	os.WriteFile(other, []byte("something else"), 0o644)
	otherSum := sha256.Sum256([]byte("something else"))
	m := versions.Model{Source: "file://" + mine, TargetSubdir: "loras"}
	lock := &versions.Lock{Models: []versions.LockedModel{{Source: m.Source, Dest: m.Dest(), URL: "file://" + other, SHA256: hex.EncodeToString(otherSum[:]), Size: 14}}}
	f := &models.Fetcher{Store: models.Store{Dir: filepath.Join(testsupport.TempDir(t), "models")}}
	if src, _, ok := models.LocalModel(f, m, lock); !ok || src != mine {
		t.Errorf("LocalModel: %s, %v; want %s", src, ok, mine)
	}
	if got, err := models.FetchLocked(context.Background(), f, m, lock); err == nil || !strings.Contains(err.Error(), mine) {
		t.Errorf("FetchLocked with the lock's url elsewhere: %+v, %v; want %s refused", got, err, mine)
	}
}

// The plan of a realize --dry-run says a file:// model edited since the
// store copied it is to be read again (where the run refuses it), not
// that the store has it.
func TestPlanOfAnEditedFileModelIsNotStored(t *testing.T) {
	src := filepath.Join(testsupport.TempDir(t), "mine.safetensors")
	os.WriteFile(src, []byte("my weights"), 0o644)
	f := &models.Fetcher{Store: models.Store{Dir: filepath.Join(testsupport.TempDir(t), "models")}, Offline: true}
	res, err := f.Fetch(context.Background(), models.Request{Source: "file://" + src})
	if err != nil {
		t.Fatalf("an offline copy of a local file: %v", err)
	}
	if _, stored, err := f.Plan(context.Background(), models.Request{Source: "file://" + src, SHA256: res.SHA256}); err != nil || !stored {
		t.Fatalf("plan of the unchanged file: stored %v, %v", stored, err)
	}
	os.WriteFile(src, []byte("my weights, v2"), 0o644)
	if _, stored, err := f.Plan(context.Background(), models.Request{Source: "file://" + src, SHA256: res.SHA256}); err != nil || stored {
		t.Fatalf("plan of the edited file: stored %v, %v; want it to be read again", stored, err)
	}
	if _, err := f.Fetch(context.Background(), models.Request{Source: "file://" + src, SHA256: res.SHA256, Model: "mine"}); err == nil || !strings.Contains(err.Error(), "lock --update mine") {
		t.Fatalf("fetch of the edited file: %v; want it refused naming lock --update mine", err)
	}
}
