package layers

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gofrs/flock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/comfy-image/comfy-image/versions"
)

// Compression of app layers.
type Compression string

// The compressions a build can use.
const (
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// pgzip compresses blocks of this size in parallel. The output depends on
// the block size and the level, never on how many goroutines run.
const (
	gzipBlockSize = 1 << 20
	gzipLevel     = 6
)

func (c Compression) mediaType() types.MediaType {
	if c == Zstd {
		return types.OCILayerZStd
	}
	return types.OCILayer
}

// Info is what is remembered of a built layer.
type Info struct {
	Digest    v1.Hash         `json:"digest"`
	DiffID    v1.Hash         `json:"diff_id"`
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"media_type"`
}

// Cache keeps packed layers under <cache>/layers, by a key that digests
// everything the layer is made from, so an unchanged part is never packed
// twice and a changed one is packed alone.
type Cache struct {
	Dir string
	// Jobs is the number of goroutines compressing one layer (0: GOMAXPROCS).
	Jobs int
}

// Key digests the inputs of a layer into a cache key.
func Key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (c Cache) paths(key string) (blob, meta string) {
	base := filepath.Join(c.Dir, key[:2], key)
	return base + ".blob", base + ".json"
}

// Lookup returns the layer cached under key, if any.
func (c Cache) Lookup(key string) (v1.Layer, bool) {
	blob, meta := c.paths(key)
	data, err := os.ReadFile(meta)
	if err != nil {
		return nil, false
	}
	var info Info
	if json.Unmarshal(data, &info) != nil {
		return nil, false
	}
	if fi, err := os.Stat(blob); err != nil || fi.Size() != info.Size {
		return nil, false
	}
	return &fileLayer{path: blob, info: info}, true
}

// Build returns the layer cached under key, or packs entries into it. The
// bool reports whether it was packed now.
func (c Cache) Build(ctx context.Context, key string, comp Compression, opts TarOptions, entries func() ([]Entry, error)) (v1.Layer, bool, error) {
	if l, ok := c.Lookup(key); ok {
		return l, false, nil
	}
	blob, meta := c.paths(key)
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return nil, false, err
	}
	lock := flock.New(blob + ".lock")
	if _, err := lock.TryLockContext(ctx, 50*time.Millisecond); err != nil {
		return nil, false, err
	}
	defer lock.Unlock()
	if l, ok := c.Lookup(key); ok {
		return l, false, nil
	}
	es, err := entries()
	if err != nil {
		return nil, false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(blob), ".pack-*")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	info, err := c.pack(tmp, es, comp, opts)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, err
	}
	if err := os.Rename(tmp.Name(), blob); err != nil {
		return nil, false, err
	}
	data, _ := json.Marshal(info)
	if err := versions.WriteFileAtomic(meta, data, 0o644); err != nil {
		return nil, false, err
	}
	return &fileLayer{path: blob, info: info}, true, nil
}

// pack writes the compressed tar of entries to w, hashing the tar (diffID)
// and the compressed bytes (digest) in the same pass.
func (c Cache) pack(w io.Writer, entries []Entry, comp Compression, opts TarOptions) (Info, error) {
	digest, diff := sha256.New(), sha256.New()
	counter := &countWriter{}
	compressed := io.MultiWriter(w, digest, counter)
	zw, err := c.compressor(compressed, comp)
	if err != nil {
		return Info{}, err
	}
	if err := WriteTar(io.MultiWriter(zw, diff), entries, opts); err != nil {
		return Info{}, err
	}
	if err := zw.Close(); err != nil {
		return Info{}, err
	}
	return Info{
		Digest:    hashOf(digest),
		DiffID:    hashOf(diff),
		Size:      counter.n,
		MediaType: comp.mediaType(),
	}, nil
}

func (c Cache) compressor(w io.Writer, comp Compression) (io.WriteCloser, error) {
	switch comp {
	case Zstd:
		// One encoder goroutine keeps zstd's output byte-identical.
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	case Gzip, "":
		zw, err := pgzip.NewWriterLevel(w, gzipLevel)
		if err != nil {
			return nil, err
		}
		jobs := c.Jobs
		if jobs <= 0 {
			jobs = max(1, runtimeProcs())
		}
		if err := zw.SetConcurrency(gzipBlockSize, jobs); err != nil {
			return nil, err
		}
		return zw, nil
	}
	return nil, fmt.Errorf("unknown compression %q (expected gzip or zstd)", comp)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// fileLayer is a packed layer in the cache; its digests come from the
// cache, so asking for them never reads the blob.
type fileLayer struct {
	path string
	info Info
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.info.Digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.info.DiffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.info.Size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.info.MediaType, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }

func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	var r io.Reader
	if l.info.MediaType == types.OCILayerZStd {
		d, err := zstd.NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		r = d.IOReadCloser()
	} else {
		g, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		r = g
	}
	return readCloser{r, f}, nil
}

type readCloser struct {
	io.Reader
	f *os.File
}

func (rc readCloser) Close() error { return rc.f.Close() }

// ModelFile is one stored model file and its path inside an image.
type ModelFile struct {
	File   string // the store's file
	Path   string // path inside the image ("vae/x.safetensors")
	SHA256 string
}

// ModelLayer is an uncompressed layer holding model files (one, or several
// small ones when the layer budget is short). Its bytes are tar headers,
// the stored files and zero padding, streamed from the store; digest and
// size come from a cache, so a registry HEAD check never reads a file.
type ModelLayer struct {
	Files  []ModelFile
	digest v1.Hash
	size   int64
	// pieces alternate: header bytes, then a file (path) and its padding.
	pieces []piece
}

type piece struct {
	header []byte
	file   string
	pad    int64
}

// tarTrailer is what ends a tar: two zero blocks.
const tarTrailer = 1024

// NewModelLayer makes the layer of one stored model file.
func NewModelLayer(cacheDir, file, inImage, sha string, modTime time.Time) (*ModelLayer, error) {
	return NewModelGroupLayer(cacheDir, []ModelFile{{File: file, Path: inImage, SHA256: sha}}, modTime)
}

// NewModelGroupLayer makes one layer of several stored model files. Its
// digest is cached under cacheDir by the files' sha256 and paths, and
// computed (one read of each file) only the first time.
func NewModelGroupLayer(cacheDir string, files []ModelFile, modTime time.Time) (*ModelLayer, error) {
	files = append([]ModelFile(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	l := &ModelLayer{Files: files}
	seen := map[string]bool{}
	for _, f := range files {
		fi, err := os.Stat(f.File)
		if err != nil {
			return nil, err
		}
		header, err := fileHeaders(f.Path, fi.Size(), modTime, seen)
		if err != nil {
			return nil, err
		}
		p := piece{header: header, file: f.File, pad: (512 - fi.Size()%512) % 512}
		l.pieces = append(l.pieces, p)
		l.size += int64(len(p.header)) + fi.Size() + p.pad
	}
	l.size += tarTrailer
	key := modelLayerKey(files, modTime)
	if known, ok := knownModelLayer(cacheDir, key); ok && known.Size == l.size {
		l.digest = known.Digest
		return l, nil
	}
	h := sha256.New()
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if _, err := io.Copy(h, rc); err != nil {
		return nil, err
	}
	l.digest = hashOf(h)
	return l, rememberModelLayer(cacheDir, key, l.digest, l.size)
}

// fileHeaders are the tar header blocks of a model file at p (and of its
// parent directories not in seen), exactly as the layer stream has them.
func fileHeaders(p string, size int64, modTime time.Time, seen map[string]bool) ([]byte, error) {
	var buf bytes.Buffer
	// WriteHeader writes the header blocks at once; a writer per file keeps
	// it from asking for the content it will not be given.
	tw := tar.NewWriter(&buf)
	var dirs []string
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		if !seen[d] {
			seen[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: modTime, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o644, Size: size, ModTime: modTime, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func modelLayerMeta(cacheDir, key string) string {
	return filepath.Join(cacheDir, "model-layers", key+".json")
}

func knownModelLayer(cacheDir, key string) (Info, bool) {
	var known Info
	data, err := os.ReadFile(modelLayerMeta(cacheDir, key))
	return known, err == nil && json.Unmarshal(data, &known) == nil
}

func rememberModelLayer(cacheDir, key string, digest v1.Hash, size int64) error {
	data, _ := json.Marshal(Info{Digest: digest, DiffID: digest, Size: size, MediaType: types.OCIUncompressedLayer})
	return versions.WriteFileAtomic(modelLayerMeta(cacheDir, key), data, 0o644)
}

// ModelLayerObserver computes the layer digest of a model file at inImage
// while it downloads (models.Request.Observe), so the file is read once.
func ModelLayerObserver(cacheDir, inImage string, modTime time.Time) func(int64) (io.Writer, func(string)) {
	return func(size int64) (io.Writer, func(string)) {
		header, err := fileHeaders(inImage, size, modTime, map[string]bool{})
		if err != nil {
			return io.Discard, func(string) {}
		}
		h := sha256.New()
		h.Write(header)
		return h, func(sha string) {
			pad := (512 - size%512) % 512
			io.CopyN(h, zeros{}, pad+tarTrailer)
			key := modelLayerKey([]ModelFile{{Path: inImage, SHA256: sha}}, modTime)
			_ = rememberModelLayer(cacheDir, key, hashOf(h), int64(len(header))+size+pad+tarTrailer)
		}
	}
}

// modelLayerKey names a model layer by its files' content and paths (sorted
// by path) and the mtime: what its bytes depend on.
func modelLayerKey(files []ModelFile, modTime time.Time) string {
	files = append([]ModelFile(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	parts := []string{modTime.UTC().String()}
	for _, f := range files {
		parts = append(parts, f.SHA256, f.Path)
	}
	return Key(parts...)
}

func (l *ModelLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *ModelLayer) DiffID() (v1.Hash, error)            { return l.digest, nil }
func (l *ModelLayer) Size() (int64, error)                { return l.size, nil }
func (l *ModelLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }
func (l *ModelLayer) Compressed() (io.ReadCloser, error)  { return l.Uncompressed() }

// Uncompressed streams headers, files and padding without buffering a file;
// files are opened one at a time as the stream reaches them.
func (l *ModelLayer) Uncompressed() (io.ReadCloser, error) {
	var readers []io.Reader
	for _, p := range l.pieces {
		readers = append(readers, bytes.NewReader(p.header), &lazyFile{path: p.file}, io.LimitReader(zeros{}, p.pad))
	}
	readers = append(readers, io.LimitReader(zeros{}, tarTrailer))
	lr := &layerReader{Reader: io.MultiReader(readers...), readers: readers}
	return lr, nil
}

// lazyFile opens its file on first read and closes it at EOF.
type lazyFile struct {
	path string
	f    *os.File
	done bool
}

func (z *lazyFile) Read(p []byte) (int, error) {
	if z.done {
		return 0, io.EOF
	}
	if z.f == nil {
		f, err := os.Open(z.path)
		if err != nil {
			return 0, err
		}
		z.f = f
	}
	n, err := z.f.Read(p)
	if err == io.EOF {
		z.f.Close()
		z.f, z.done = nil, true
	}
	return n, err
}

type layerReader struct {
	io.Reader
	readers []io.Reader
}

func (r *layerReader) Close() error {
	for _, rd := range r.readers {
		if z, ok := rd.(*lazyFile); ok && z.f != nil {
			z.f.Close()
		}
	}
	return nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// ModTimeFromEnv is SOURCE_DATE_EPOCH as a time, or the Unix epoch.
func ModTimeFromEnv(getenv func(string) string) (time.Time, error) {
	v := strings.TrimSpace(getenv("SOURCE_DATE_EPOCH"))
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	var secs int64
	if _, err := fmt.Sscanf(v, "%d", &secs); err != nil || secs < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected seconds since 1970", v)
	}
	return time.Unix(secs, 0).UTC(), nil
}
