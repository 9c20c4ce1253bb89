// Package models fetches model files (hf://, https://, http://, file://)
// into a content-addressed store, <cache>/models/sha256/<hex>, and places
// them in a MODELS_DIR by hard link (copy across devices).
package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/versions"
)

// Store is the content-addressed model store of a cache.
type Store struct {
	// Dir is <cache>/models.
	Dir string
}

// BlobPath is where the file with the given sha256 lives.
func (s Store) BlobPath(sha string) string { return filepath.Join(s.Dir, "sha256", sha) }

// Has reports whether the store holds sha, and its size.
func (s Store) Has(sha string) (int64, bool) {
	if sha == "" {
		return 0, false
	}
	fi, err := os.Stat(s.BlobPath(sha))
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}

// Known is what the store remembers of a source it fetched before.
type Known struct {
	Source   string `json:"source"`
	URL      string `json:"url"`
	Revision string `json:"revision,omitempty"`
	ETag     string `json:"etag,omitempty"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

func (s Store) sourceKey(source string) string {
	sum := sha256.Sum256([]byte(source))
	return hex.EncodeToString(sum[:])
}

func (s Store) indexPath(source string) string {
	return filepath.Join(s.Dir, "sources", s.sourceKey(source)+".json")
}

// Lookup returns what the store knows of a source, if its file is still there.
func (s Store) Lookup(source string) (Known, bool) {
	data, err := os.ReadFile(s.indexPath(source))
	if err != nil {
		return Known{}, false
	}
	var k Known
	if json.Unmarshal(data, &k) != nil || k.Source != source {
		return Known{}, false
	}
	if size, ok := s.Has(k.SHA256); !ok || size != k.Size {
		return Known{}, false
	}
	return k, true
}

func (s Store) remember(k Known) error {
	data, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	return versions.WriteFileAtomic(s.indexPath(k.Source), data, 0o644)
}

// Adopt moves a fully written, verified temporary file (in the store's
// sha256 folder) into the store as sha.
func (s Store) Adopt(tmp, sha string) error { return s.adopt(tmp, sha) }

// adopt moves a fully written, verified temporary file into the store.
func (s Store) adopt(tmp, sha string) error {
	dst := s.BlobPath(sha)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if _, ok := s.Has(sha); ok {
		return os.Remove(tmp)
	}
	if err := os.Chmod(tmp, 0o444); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// Place makes dest a hard link to the stored file, or a copy when the store
// is on another device. It reports whether anything changed. A different
// file already at dest is replaced only with force.
func (s Store) Place(sha, dest string, force bool) (bool, error) {
	src := s.BlobPath(sha)
	sfi, err := os.Stat(src)
	if err != nil {
		return false, fmt.Errorf("model %s not in the store: %w", sha, err)
	}
	if dfi, err := os.Stat(dest); err == nil {
		if os.SameFile(sfi, dfi) {
			return false, nil
		}
		if dfi.Size() == sfi.Size() {
			if got, err := fileutil.SHA256(dest); err == nil && got == sha {
				return false, nil // a copy from an earlier run across devices
			}
		}
		if !force {
			return false, fmt.Errorf("%s exists and is not the model %s; move it away or use --force", dest, sha[:12])
		}
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return false, err
	}
	tmp := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".comfy-tmp")
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) {
			return false, err
		}
		if err := copyFile(src, tmp); err != nil {
			os.Remove(tmp)
			return false, err
		}
	}
	return true, os.Rename(tmp, dest)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o444)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
