// Package fileutil holds the small file helpers several packages share.
package fileutil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// SHA256 is the hex sha256 of a file's content.
func SHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteAtomic replaces file with data so that readers see the old or the
// new content, never a part.
func WriteAtomic(file string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// MismatchError is what WriteChecked found instead of the expected bytes.
type MismatchError struct {
	Size   int64
	SHA256 string // hex
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("got %d bytes with sha256:%s", e.Size, e.SHA256)
}

// WriteChecked copies r to file through a temporary file in the same
// folder, renamed only when the bytes have the expected sha256 (hex) and
// size: no file is ever under a name its bytes do not match, and a reader
// never sees a half-written one. A mismatch is a *MismatchError.
func WriteChecked(file string, r io.Reader, sha256Hex string, size int64) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256Hex || n != size {
		return &MismatchError{Size: n, SHA256: got}
	}
	return os.Rename(tmp.Name(), file)
}
