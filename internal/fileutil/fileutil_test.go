package fileutil

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteCheckedRenamesOnlyTheExpectedBytes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "blob")
	data := "the expected bytes"
	sum := sha256.Sum256([]byte(data))
	want := hex.EncodeToString(sum[:])

	// Other bytes under the expected digest: refused, nothing left behind.
	err := WriteChecked(file, strings.NewReader("other bytes"), want, int64(len(data)))
	var bad *MismatchError
	if !errors.As(err, &bad) || bad.Size != int64(len("other bytes")) {
		t.Fatalf("err = %v, want a MismatchError naming 11 bytes", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused write left %v", entries)
	}
	// Right bytes, wrong size expected: refused too.
	if err := WriteChecked(file, strings.NewReader(data), want, 1); !errors.As(err, &bad) {
		t.Fatalf("size mismatch: err = %v", err)
	}
	if err := WriteChecked(file, strings.NewReader(data), want, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(file); string(got) != data {
		t.Fatalf("file holds %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
