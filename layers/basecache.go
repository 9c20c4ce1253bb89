package layers

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/gofrs/flock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// BaseBlobsDir is where a cache keeps the compressed layers of registry
// base images, one file per digest (sha256/<hex>), so a build pulls each
// base blob at most once whatever it writes (the facts, the venv, every
// local output), and later builds pull none.
func BaseBlobsDir(cacheDir string) string { return filepath.Join(cacheDir, "bases", "blobs") }

// cachedBase is a registry base image whose layers are read through the
// blob cache in dir. go-containerregistry's pkg/v1/cache is not used: its
// filesystem cache trusts the files it finds (no digest check), writes
// them in place (a reader may see half a file) and stores each layer a
// second time uncompressed; and its layers lose the registry origin that
// lets a push mount them.
type cachedBase struct {
	v1.Image
	dir string

	mu    sync.Mutex
	fills map[v1.Hash]*fill // one check or pull per blob and build
}

// fill is the cache file of one blob, checked or pulled once.
type fill struct {
	once sync.Once
	file string
	err  error
}

// withBlobCache reads img's layers through the blob cache in dir.
func withBlobCache(img v1.Image, dir string) v1.Image {
	return &cachedBase{Image: img, dir: dir, fills: map[v1.Hash]*fill{}}
}

func (c *cachedBase) fillOf(d v1.Hash) *fill {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.fills[d]
	if f == nil {
		f = &fill{}
		c.fills[d] = f
	}
	return f
}

func (c *cachedBase) Layers() ([]v1.Layer, error) {
	ls, err := c.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = c.wrap(l)
	}
	return out, nil
}

func (c *cachedBase) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := c.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return c.wrap(l), nil
}

func (c *cachedBase) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	l, err := c.Image.LayerByDiffID(h)
	if err != nil {
		return nil, err
	}
	return c.wrap(l), nil
}

// wrap reads l through the cache, keeping its registry origin (a push
// to the same registry mounts it, reading nothing).
func (c *cachedBase) wrap(l v1.Layer) v1.Layer {
	if d, err := l.Digest(); err != nil || d.Algorithm != "sha256" {
		return l // checked by sha256 only; read as it is
	}
	cl := &cachedLayer{inner: l, dir: c.dir, base: c}
	if ml, ok := l.(*remote.MountableLayer); ok {
		return &remote.MountableLayer{Layer: cl, Reference: ml.Reference}
	}
	return cl
}

// cachedLayer is a base layer whose compressed bytes come from the cache
// file named by its digest, pulled once into it (to a temporary file,
// checked, renamed) when missing. The file is untrusted: it is checked
// against the digest before its first use in a build (a damaged one is
// pulled again) and again as it is read (a file changed since gives an
// error, never other bytes).
type cachedLayer struct {
	inner v1.Layer
	dir   string
	base  *cachedBase
}

func (l *cachedLayer) Digest() (v1.Hash, error)            { return l.inner.Digest() }
func (l *cachedLayer) DiffID() (v1.Hash, error)            { return l.inner.DiffID() }
func (l *cachedLayer) Size() (int64, error)                { return l.inner.Size() }
func (l *cachedLayer) MediaType() (types.MediaType, error) { return l.inner.MediaType() }

func (l *cachedLayer) Compressed() (io.ReadCloser, error) {
	d, err := l.inner.Digest()
	if err != nil {
		return nil, err
	}
	size, err := l.inner.Size()
	if err != nil {
		return nil, err
	}
	fl := l.base.fillOf(d)
	fl.once.Do(func() { fl.file, fl.err = l.fill(d, size) })
	if fl.err != nil {
		return nil, fl.err
	}
	f, err := os.Open(fl.file)
	if err != nil {
		return nil, err
	}
	return &verifyingReader{f: f, h: sha256.New(), want: d, size: size, file: fl.file}, nil
}

// Uncompressed decompresses the cached bytes (gzip or zstd, as the
// layer's bytes say), caching nothing more. gzip, by far the most common
// and the one a build reads a whole base through for its facts, goes
// through klauspost's decoder: it takes about 0.7x the CPU of the
// standard library's (go-containerregistry's), which on a 2-core runner
// is time the uploads beside it get back.
func (l *cachedLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(rc, 1<<16)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("base layer: %w", err)
		}
		return &gunzipReader{Reader: zr, compressed: rc}, nil
	}
	rc.Close()
	ul, err := partial.CompressedToLayer(compressedOnly{l})
	if err != nil {
		return nil, err
	}
	return ul.Uncompressed()
}

// gunzipReader is the decompressed stream of a cache file. The gzip
// reader (multistream) reads its source to the end before it gives EOF,
// so the trailer's CRC and size and the file's digest (verifyingReader)
// are both checked by then.
type gunzipReader struct {
	*gzip.Reader
	compressed io.ReadCloser
}

func (r *gunzipReader) Close() error {
	r.Reader.Close()
	return r.compressed.Close()
}

// compressedOnly hides Uncompressed, so partial derives it from
// Compressed.
type compressedOnly struct{ l *cachedLayer }

func (c compressedOnly) Digest() (v1.Hash, error)            { return c.l.Digest() }
func (c compressedOnly) Compressed() (io.ReadCloser, error)  { return c.l.Compressed() }
func (c compressedOnly) Size() (int64, error)                { return c.l.Size() }
func (c compressedOnly) MediaType() (types.MediaType, error) { return c.l.MediaType() }

// fill makes sure the cache file holds the layer's bytes: checked if it
// is there (removed when damaged), else pulled. A lock per blob keeps two
// builds from pulling the same blob at once.
func (l *cachedLayer) fill(d v1.Hash, size int64) (string, error) {
	file := filepath.Join(l.dir, d.Algorithm, d.Hex)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", err
	}
	lock := flock.New(file + ".lock")
	if err := lock.Lock(); err != nil {
		return "", err
	}
	defer lock.Unlock()
	if err := checkFile(file, d, size); err == nil {
		return file, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		// Damaged: pulled again below.
		if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return file, l.pull(file, d, size)
}

// pull copies the layer's bytes to file through a temporary file, checked
// against the digest and size before the rename.
func (l *cachedLayer) pull(file string, d v1.Hash, size int64) error {
	rc, err := l.inner.Compressed()
	if err != nil {
		return fmt.Errorf("base layer %s: %w", d, err)
	}
	defer rc.Close()
	var bad *fileutil.MismatchError
	switch err := fileutil.WriteChecked(file, rc, d.Hex, size); {
	case errors.As(err, &bad):
		return fmt.Errorf("base layer %s: the registry sent %d bytes with digest sha256:%s", d, bad.Size, bad.SHA256)
	case err != nil:
		return fmt.Errorf("base layer %s: %w", d, err)
	}
	return nil
}

// checkFile checks that file holds size bytes of digest d.
func checkFile(file string, d v1.Hash, size int64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d.String() || n != size {
		return fmt.Errorf("cached base layer %s: %d bytes with digest %s, want %s", file, n, got, d)
	}
	return nil
}

// verifyingReader reads a cache file and fails at its end when its bytes
// are not the digest's.
type verifyingReader struct {
	f    *os.File
	h    hash.Hash
	n    int64
	want v1.Hash
	size int64
	file string
}

func (r *verifyingReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if err == io.EOF {
		if got := "sha256:" + hex.EncodeToString(r.h.Sum(nil)); got != r.want.String() || r.n != r.size {
			return n, fmt.Errorf("cached base layer %s changed while read: %d bytes with digest %s, want %s", r.file, r.n, got, r.want)
		}
	}
	return n, err
}

func (r *verifyingReader) Close() error { return r.f.Close() }
