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
	"time"

	"github.com/comfy-image/comfy-image/internal/fileutil"
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
	// Stamp is, for a file:// source, the stamp its file had when it was
	// copied in: the stored copy stands for the file only while the file
	// still has it (an edited file is read again, and refused if pinned).
	Stamp *Stamp `json:"stamp,omitempty"`
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
	return fileutil.WriteAtomic(s.indexPath(k.Source), data, 0o644)
}

// Adopt moves a fully written, verified temporary file (in the store's
// sha256 folder) into the store as sha, read-only.
func (s Store) Adopt(tmp, sha string) error { return s.adopt(tmp, sha, 0o444) }

// adopt moves a fully written, verified temporary file into the store and
// records its stamp. Its mtime is set a few seconds into the past first, so
// any later write, even within the same clock tick, changes it.
func (s Store) adopt(tmp, sha string, mode os.FileMode) error {
	dst := s.BlobPath(sha)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if _, ok := s.Has(sha); ok {
		return os.Remove(tmp)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	past := time.Now().Add(-2 * time.Second).Truncate(time.Second)
	if err := os.Chtimes(tmp, past, past); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	fi, err := os.Lstat(dst)
	if err != nil {
		return err
	}
	return s.writeStamp(sha, fi)
}

// stamp is what a store file looked like when its content was last hashed.
type stamp struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
}

func stampOf(fi os.FileInfo) stamp {
	st := stamp{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Dev, st.Ino = uint64(sys.Dev), sys.Ino
	}
	return st
}

func (s Store) stampPath(sha string) string { return filepath.Join(s.Dir, "stamps", sha+".json") }

func (s Store) readStamp(sha string) (stamp, bool) {
	var st stamp
	data, err := os.ReadFile(s.stampPath(sha))
	return st, err == nil && json.Unmarshal(data, &st) == nil
}

func (s Store) writeStamp(sha string, fi os.FileInfo) error {
	data, err := json.Marshal(stampOf(fi))
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(s.stampPath(sha), data, 0o644)
}

// DamagedError is a store file whose content is no longer what its name
// (the sha256) says: edited in place through a hard link, truncated or
// replaced. The store has removed it.
type DamagedError struct {
	Path, Want, Got string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("model store file %s is damaged (its sha256 is now %s, not %s; edited through a hard link, truncated or replaced?); it was removed from the store", e.Path, e.Got, e.Want)
}

// Verified is the one way to get the path of a stored file to place or
// pack: it returns the path when the file's size, mtime and inode equal
// the stamp recorded when its content was last hashed, and otherwise (or
// with no stamp) hashes it again. A file whose content no longer matches
// its sha256 is removed and a *DamagedError returned; a file that is not
// stored returns an error wrapping os.ErrNotExist.
//
// A change that keeps the size, the inode and the mtime (a same-size
// rewrite in place followed by `touch -r`) cannot be seen without
// hashing, and is not detected.
func (s Store) Verified(sha string) (string, error) {
	p := s.BlobPath(sha)
	if !sha256Hex.MatchString(sha) {
		return "", fmt.Errorf("model %q: not a sha256: %w", sha, os.ErrNotExist)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return "", fmt.Errorf("model %s not in the store: %w", sha, err)
	}
	if st, ok := s.readStamp(sha); ok && fi.Mode().IsRegular() && st == stampOf(fi) {
		return p, nil
	}
	got := "(not a regular file)"
	if fi.Mode().IsRegular() {
		if got, err = fileutil.SHA256(p); err != nil {
			return "", fmt.Errorf("model store file %s: %w", p, err)
		}
	}
	if got != sha {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("model store file %s is damaged (sha256 %s, not %s) and could not be removed: %w", p, got, sha, err)
		}
		os.Remove(s.stampPath(sha))
		return "", &DamagedError{Path: p, Want: sha, Got: got}
	}
	// Record what was hashed, unless it changed meanwhile (hashed again next time).
	if after, err := os.Lstat(p); err == nil && stampOf(after) == stampOf(fi) {
		if err := s.writeStamp(sha, fi); err != nil {
			return "", err
		}
	}
	return p, nil
}

// Place makes dest a hard link to the stored file, or a copy when the store
// is on another device. It reports whether anything changed. A different
// file already at dest is replaced only with force.
func (s Store) Place(sha, dest string, force bool) (bool, error) {
	src, err := s.Verified(sha)
	if err != nil {
		return false, err
	}
	sfi, err := os.Stat(src)
	if err != nil {
		return false, err
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
		if err := copyFile(src, tmp, sfi.Mode().Perm()); err != nil {
			os.Remove(tmp)
			return false, err
		}
	}
	return true, os.Rename(tmp, dest)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
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
