package gitcache

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/internal/repourl"
)

// A pack file ends with the SHA-1 of everything before it, and so does its
// .idx: a flipped byte anywhere fails that checksum. Hashing every pack on
// every run would cost a read of the whole mirror, so each file's stamp
// (size, mtime, inode) is recorded beside the mirror once it checked out,
// and a file is hashed again only when its stamp changed.

// DamagedMirrorError is a mirror whose pack files fail their checksums.
type DamagedMirrorError struct {
	Dir, File string
}

func (e *DamagedMirrorError) Error() string {
	return fmt.Sprintf("mirror %s is damaged: %s fails its checksum", e.Dir, filepath.Base(e.File))
}

type packStamp struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	Ino     uint64 `json:"ino"`
}

func packStampOf(fi os.FileInfo) packStamp {
	st := packStamp{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Ino = sys.Ino
	}
	return st
}

func stampsFile(dir string) string { return dir + ".checked.json" }

// checkPacks verifies the checksums of the mirror's pack and index files
// whose stamps changed since they were last checked. A mirror that does
// not exist passes (there is nothing to use).
func checkPacks(dir string) error {
	files, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "pack-*.pack"))
	idx, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "pack-*.idx"))
	files = append(files, idx...)
	known := map[string]packStamp{}
	if data, err := os.ReadFile(stampsFile(dir)); err == nil {
		_ = json.Unmarshal(data, &known)
	}
	checked := map[string]packStamp{}
	changed := false
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return &DamagedMirrorError{Dir: dir, File: f}
		}
		st := packStampOf(fi)
		name := filepath.Base(f)
		if known[name] != st {
			if !trailerMatches(f) {
				return &DamagedMirrorError{Dir: dir, File: f}
			}
			changed = true
		}
		checked[name] = st
	}
	if changed || len(checked) != len(known) {
		data, _ := json.Marshal(checked)
		return fileutil.WriteAtomic(stampsFile(dir), data, 0o644)
	}
	return nil
}

// trailerMatches reports whether file ends with the SHA-1 of the rest.
func trailerMatches(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() < sha1.Size {
		return false
	}
	h := sha1.New()
	if _, err := io.CopyN(h, f, fi.Size()-sha1.Size); err != nil {
		return false
	}
	trailer := make([]byte, sha1.Size)
	if _, err := io.ReadFull(f, trailer); err != nil {
		return false
	}
	return bytes.Equal(h.Sum(nil), trailer)
}

// repairOrName is called with the exclusive lock held before a mirror is
// used: a damaged mirror is removed (to be cloned again) when online, and
// named in the error when offline.
func (c *Cache) repairOrName(repo, dir string) error {
	err := checkPacks(dir)
	if err == nil {
		return nil
	}
	shown := repourl.Redact(repo)
	if c.Offline {
		return fmt.Errorf("repo %s: %w; run without --offline to clone it again", shown, err)
	}
	c.logf("repo %s: %v; cloning it again", shown, err)
	if rerr := os.RemoveAll(dir); rerr != nil {
		return fmt.Errorf("repo %s: %w, and removing it failed: %v", shown, err, rerr)
	}
	os.Remove(stampsFile(dir))
	c.mu.Lock()
	delete(c.fetched, dir)
	c.mu.Unlock()
	return nil
}
