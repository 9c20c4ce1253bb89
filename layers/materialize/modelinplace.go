package materialize

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/comfy-image/comfy-image/realize/models"
)

// ModelLayerDigest computes the digest of a model file's own layer from
// the file's bytes as they are read once for its sha256 (the Observe of
// models.Request): a file:// model read in place costs one read for both,
// and, each hash in its own goroutine (models.Fetcher.ReadLocal), the
// time of one.
type ModelLayerDigest struct {
	inImage string
	modTime time.Time
	h       hash.Hash
	digest  v1.Hash
	size    int64
}

// NewModelLayerDigest digests the layer of a model file at inImage.
func NewModelLayerDigest(inImage string, modTime time.Time) *ModelLayerDigest {
	return &ModelLayerDigest{inImage: inImage, modTime: modTime}
}

// Observe is a models.Request.Observe: it returns the writer that takes
// the file's bytes, and the function that ends the layer once they all
// came.
func (d *ModelLayerDigest) Observe(size int64) (io.Writer, func(string)) {
	header, err := fileHeaders(d.inImage, size, d.modTime, map[string]bool{})
	if err != nil {
		return io.Discard, func(string) {} // the layer is then read apart
	}
	d.h = sha256.New()
	d.h.Write(header)
	return d.h, func(string) {
		pad := (512 - size%512) % 512
		io.CopyN(d.h, zeros{}, pad+tarTrailer)
		d.digest, d.size = hashOf(d.h), int64(len(header))+size+pad+tarTrailer
	}
}

// Remember records the digest under cacheDir for file, with the stamp the
// file had before it was read (models.Local.Stamp): a file changed since
// does not match it, and is read again.
func (d *ModelLayerDigest) Remember(cacheDir string, file ModelFile, stamp models.Stamp) error {
	if d.size == 0 {
		return nil // not observed to the end: NewModelGroupLayer reads it
	}
	return rememberModelLayer(cacheDir, ModelLayerKey([]ModelFile{file}, d.modTime), d.digest, d.size, []models.Stamp{stamp})
}

// KnownModelFile says whether the layer of file alone (its sha256 pinned)
// is remembered under cacheDir and the file is as it was when digested:
// then neither its sha256 nor its layer needs a read. It returns the
// file's size.
func KnownModelFile(cacheDir string, file ModelFile, modTime time.Time) (int64, bool) {
	if file.SHA256 == "" {
		return 0, false
	}
	stamps, err := stampFiles([]ModelFile{file})
	if err != nil {
		return 0, false
	}
	known, ok := knownModelLayer(cacheDir, ModelLayerKey([]ModelFile{file}, modTime))
	return stamps[0].Size, ok && len(known.Files) == 1 && known.Files[0] == stamps[0]
}

// checkStamp refuses a file about to be streamed into a layer whose stamp
// is no longer the one its digest was computed with: it changed, and the
// stream would end in a digest mismatch after every byte was sent.
func checkStamp(f *os.File, file ModelFile, want models.Stamp) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if got := stampOf(fi, file); got != want {
		return &ChangedError{File: file.File, Path: file.Path}
	}
	return nil
}

// ChangedError is a model file that changed after its layer's digest was
// taken: streaming it would send other bytes than the digest names.
type ChangedError struct{ File, Path string }

// DamagedBytes: the layer must be digested again (publish retries
// nothing and the build makes the layer anew).
func (e *ChangedError) DamagedBytes() bool { return true }

func (e *ChangedError) Error() string {
	return fmt.Sprintf("model file %s (%s in the image) changed after its layer was digested; run again", e.File, e.Path)
}
