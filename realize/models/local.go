package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/comfy-image/comfy-image/internal/fanout"
	"github.com/comfy-image/comfy-image/internal/streams"
)

// Stamp is what a file looked like when it was hashed: its size, mtime,
// device and inode, and its ctime, which no user can set back (a file
// rewritten with its old size and mtime restored still moves its ctime).
// A file whose stamp is unchanged is taken as unchanged and not read.
type Stamp struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	Dev     uint64 `json:"dev,omitempty"`
	Ino     uint64 `json:"ino,omitempty"`
	CtimeNs int64  `json:"ctime_ns,omitempty"`
}

// StampOf is the stamp of a file's FileInfo.
func StampOf(fi os.FileInfo) Stamp {
	st := Stamp{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Dev, st.Ino = uint64(sys.Dev), sys.Ino
		st.CtimeNs = sys.Ctim.Sec*1e9 + sys.Ctim.Nsec
	}
	return st
}

// StampFile is the stamp of the file at path.
func StampFile(path string) (Stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Stamp{}, err
	}
	return StampOf(fi), nil
}

// Local is a file:// model read where it lies.
type Local struct {
	Result
	// Path is the source file; Stamp is what it looked like before it was
	// read (and still did after): a later read of Path must find it so.
	Path  string
	Stamp Stamp
}

// LocalPath is the file a request names when its source (or its pinned
// URL) is a file:// URL: an image build reads such a model in place
// rather than copying it into the store.
func (f *Fetcher) LocalPath(req Request) (string, bool) {
	u, err := f.resolveURL(req)
	if err != nil || u.Scheme != "file" {
		return "", false
	}
	return u.Path, true
}

// ReadLocal reads the file of a file:// request once, where it lies,
// without writing the store: it hashes it (sha256) and feeds the same
// bytes to req.Observe, each in its own goroutine, so the layer digest of
// an image build costs no second read and no second hash's time. A file
// whose sha256 is not the one req pins is refused, as is one that changed
// while it was read.
func (f *Fetcher) ReadLocal(ctx context.Context, req Request) (Local, error) {
	src, ok := f.LocalPath(req)
	if !ok {
		return Local{}, fmt.Errorf("model %s: not a file:// source", req.Source)
	}
	in, err := os.Open(src)
	if err != nil {
		return Local{}, fmt.Errorf("model %s: %w", req.Source, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return Local{}, fmt.Errorf("model %s: %w", req.Source, err)
	}
	if !fi.Mode().IsRegular() {
		return Local{}, fmt.Errorf("model %s: %s is not a regular file", req.Source, src)
	}
	before := StampOf(fi)
	tracker := f.reporter().Start(filepath.Base(src), fi.Size())
	h := sha256.New()
	writers := []io.Writer{h}
	var observed func(string)
	if req.Observe != nil {
		var w io.Writer
		w, observed = req.Observe(fi.Size())
		writers = append(writers, w)
	}
	n, err := fanout.Copy(&trackedReader{r: streams.WithContext(ctx, in), t: tracker}, writers...)
	tracker.Done(err)
	if err != nil {
		return Local{}, fmt.Errorf("model %s: read %s: %w", req.Source, src, err)
	}
	after, err := StampFile(src)
	if err != nil || after != before || n != before.Size {
		return Local{}, fmt.Errorf("model %s: %s changed while it was read; run again once it is complete", req.Source, src)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if req.SHA256 != "" && sum != req.SHA256 {
		return Local{}, changedFileError(req, src, sum)
	}
	if observed != nil {
		observed(sum)
	}
	return Local{Result: Result{SHA256: sum, URL: req.Source, Size: n}, Path: src, Stamp: before}, nil
}

// changedFileError refuses the file src of a file:// request whose sha256
// sum is not the pinned one, naming the command that takes the new bytes.
func changedFileError(req Request, src, sum string) error {
	name := req.Model
	if name == "" {
		name = "MODEL"
	}
	return fmt.Errorf("model %s: %s has sha256 %s, but %s is pinned (by the spec or the lock): the file changed; "+
		"put the pinned file back, or take the new one with `comfy-image lock --update %s` (or a new sha256 in the spec, when it pins one)", req.Source, src, sum, req.SHA256, name)
}

// trackedReader reports the progress of a read.
type trackedReader struct {
	r io.Reader
	t interface{ Add(int64) }
}

func (c *trackedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.Add(int64(n))
	return n, err
}
