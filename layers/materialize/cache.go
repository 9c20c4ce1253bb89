package materialize

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
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/comfy-image/comfy-image/internal/fanout"
	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/internal/parallel"
	"github.com/comfy-image/comfy-image/realize/models"
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

// MediaType is the media type of a layer compressed with c.
func (c Compression) MediaType() types.MediaType {
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
	// Log receives a line when a damaged entry is dropped (nil: discard).
	Log io.Writer
}

// cacheMeta is what the cache keeps beside a packed blob: the layer, and
// the blob file's size and mtime when it was last known good. A blob whose
// mtime moved is hashed again before it is used.
type cacheMeta struct {
	Info
	BlobMTime int64 `json:"blob_mtime_ns,omitempty"`
}

func (c Cache) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", args...)
	}
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

// Lookup returns the layer cached under key, if any. A blob whose size
// differs from the one packed is not used; one whose mtime moved is hashed
// again, and used only when it still has its digest (a damaged blob would
// make every push fail with DIGEST_INVALID). A miss lets Build repack it.
func (c Cache) Lookup(key string) (v1.Layer, bool) {
	blob, metaFile := c.paths(key)
	data, err := os.ReadFile(metaFile)
	if err != nil {
		return nil, false
	}
	var meta cacheMeta
	if json.Unmarshal(data, &meta) != nil {
		return nil, false
	}
	fi, err := os.Stat(blob)
	if err != nil {
		return nil, false
	}
	if fi.Size() != meta.Size {
		c.logf("layer cache: layer %s (%s) is %d bytes, packed as %d; packing it again", meta.Digest, blob, fi.Size(), meta.Size)
		return nil, false
	}
	if fi.ModTime().UnixNano() != meta.BlobMTime {
		got, err := fileSHA256(blob)
		if err != nil || got != meta.Digest {
			c.logf("layer cache: layer %s (%s) is damaged: changed on disk (now sha256:%s); packing it again", meta.Digest, blob, got.Hex)
			return nil, false
		}
		meta.BlobMTime = fi.ModTime().UnixNano()
		data, _ := json.Marshal(meta)
		_ = fileutil.WriteAtomic(metaFile, data, 0o644) // only saves a rehash next time
	}
	return &fileLayer{path: blob, info: meta.Info, cache: c, key: key}, true
}

// Drop removes the layer cached under key, so the next build packs it
// again: for a blob a registry refused (DIGEST_INVALID).
func (c Cache) Drop(ctx context.Context, key string) error {
	blob, meta := c.paths(key)
	if _, err := os.Stat(filepath.Dir(blob)); os.IsNotExist(err) {
		return nil
	}
	lock := flock.New(blob + ".lock")
	if _, err := lock.TryLockContext(ctx, 50*time.Millisecond); err != nil {
		return err
	}
	defer lock.Unlock()
	for _, f := range []string{meta, blob} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// DropDigest forgets every cache entry whose layer has digest d: packed
// layers (their blobs are removed) and remembered model-layer digests. It
// returns how many it dropped. Push code calls it when a registry answers
// DIGEST_INVALID, then builds again to repack.
func (c Cache) DropDigest(ctx context.Context, d v1.Hash) (int, error) {
	dropped := 0
	metas, _ := filepath.Glob(filepath.Join(c.Dir, "??", "*.json"))
	for _, m := range metas {
		var meta cacheMeta
		if data, err := os.ReadFile(m); err != nil || json.Unmarshal(data, &meta) != nil || meta.Digest != d {
			continue
		}
		if err := c.Drop(ctx, strings.TrimSuffix(filepath.Base(m), ".json")); err != nil {
			return dropped, err
		}
		c.logf("layer cache: dropped %s (%s)", filepath.Base(m), d)
		dropped++
	}
	models, _ := filepath.Glob(filepath.Join(c.Dir, "model-layers", "*.json"))
	for _, m := range models {
		var meta modelLayerInfo
		if data, err := os.ReadFile(m); err != nil || json.Unmarshal(data, &meta) != nil || meta.Digest != d {
			continue
		}
		if err := os.Remove(m); err != nil && !os.IsNotExist(err) {
			return dropped, err
		}
		c.logf("layer cache: forgot the model layer digest %s", d)
		dropped++
	}
	return dropped, nil
}

func fileSHA256(file string) (v1.Hash, error) {
	f, err := os.Open(file)
	if err != nil {
		return v1.Hash{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return v1.Hash{}, err
	}
	return hashOf(h), nil
}

// Build returns the layer cached under key, or packs entries into it. The
// bool reports whether it was packed now.
func (c Cache) Build(ctx context.Context, key string, comp Compression, opts TarOptions, entries func() ([]Entry, error)) (v1.Layer, bool, error) {
	if l, ok := c.Lookup(key); ok {
		return l, false, nil
	}
	blob, metaFile := c.paths(key)
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
	meta := cacheMeta{Info: info}
	if fi, err := os.Stat(blob); err == nil {
		meta.BlobMTime = fi.ModTime().UnixNano()
	}
	data, _ := json.Marshal(meta)
	if err := fileutil.WriteAtomic(metaFile, data, 0o644); err != nil {
		return nil, false, err
	}
	return &fileLayer{path: blob, info: info, cache: c, key: key}, true, nil
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
		MediaType: comp.MediaType(),
	}, nil
}

func (c Cache) compressor(w io.Writer, comp Compression) (io.WriteCloser, error) {
	switch comp {
	case Zstd:
		// One encoder goroutine keeps zstd's output byte-identical.
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	case Gzip, "":
		zw, _ := gzipWriters.Get().(*pgzip.Writer)
		if zw == nil {
			var err error
			if zw, err = pgzip.NewWriterLevel(w, gzipLevel); err != nil {
				return nil, err
			}
		}
		zw.Reset(w)
		if err := zw.SetConcurrency(gzipBlockSize, parallel.Limit(c.Jobs, parallel.CPUs())); err != nil {
			return nil, err
		}
		return pooledGzip{zw}, nil
	}
	return nil, fmt.Errorf("unknown compression %q (expected gzip or zstd)", comp)
}

// gzipWriters keeps pgzip writers, with their 1 MB block buffers and
// compressors, from one layer to the next: a new writer per layer
// allocated several MB even for a 100 KB node, and with nodes packed
// side by side a 100-node first build peaked at 190 MB RSS instead of 90.
// Reset keeps the level and the block size, so the bytes are the same.
var gzipWriters sync.Pool

// pooledGzip gives its writer back to gzipWriters once closed.
type pooledGzip struct{ *pgzip.Writer }

func (z pooledGzip) Close() error {
	err := z.Writer.Close()
	gzipWriters.Put(z.Writer)
	return err
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
	// cache and key name the entry, to drop it when found damaged.
	cache Cache
	key   string
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.info.Digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.info.DiffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.info.Size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.info.MediaType, nil }

// Compressed streams the blob and checks it on the way: a blob damaged
// without its mtime moving (bit rot) fails naming the layer, and its cache
// entry is dropped so the next run packs it again, instead of a registry's
// bare DIGEST_INVALID or a bad blob in an OCI layout.
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	return &verifiedReader{ReadCloser: f, h: sha256.New(), want: l.info.Digest, bad: func(got v1.Hash) error {
		if l.key != "" {
			_ = l.cache.Drop(context.Background(), l.key)
		}
		return fmt.Errorf("cached layer %s (%s) is damaged: its bytes hash to %s; the entry was dropped, run again to pack it anew",
			l.info.Digest, l.path, got)
	}}, nil
}

// verifiedReader hashes what is read and, at the end, calls bad for its
// error when the bytes are not the ones of digest want.
type verifiedReader struct {
	io.ReadCloser
	h    hash.Hash
	want v1.Hash
	bad  func(got v1.Hash) error
}

func (r *verifiedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.h.Write(p[:n])
	if err == io.EOF {
		if got := hashOf(r.h); got != r.want {
			return n, &DamagedError{r.bad(got)}
		}
	}
	return n, err
}

// DamagedError is a layer stream whose bytes turned out other than its
// digest's. It reports DamagedBytes, which a publisher takes as damage:
// no retry, and the build makes the layer again.
type DamagedError struct{ Err error }

func (e *DamagedError) Error() string      { return e.Err.Error() }
func (e *DamagedError) Unwrap() error      { return e.Err }
func (e *DamagedError) DamagedBytes() bool { return true }

// VerifiesStream: Compressed checks the blob's bytes against its digest
// (publish.SelfVerifying), so an upload need not hash them again.
func (l *fileLayer) VerifiesStream() bool { return true }

// VerifiesStream: the stream checks its bytes against the layer's digest
// (publish.SelfVerifying), so an upload need not hash them again.
func (l *ModelLayer) VerifiesStream() bool { return true }

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

// ModelFile is one model file and its path inside an image.
type ModelFile struct {
	File   string // the store's file, or the user's (InPlace)
	Path   string // path inside the image ("vae/x.safetensors")
	SHA256 string
	// InPlace: File is a file:// model read where it lies, not a store
	// file. Its stamp then holds its inode and ctime too: a user's file
	// rewritten with its size and mtime put back is still seen changed.
	// (A store file is read-only and hard linked into targets, which moves
	// its ctime: its size and mtime are what tell.)
	InPlace bool
}

// ModelLayer is an uncompressed layer holding model files (one, or several
// small ones when the layer budget is short). Its bytes are tar headers,
// the stored files and zero padding, streamed from the store; digest and
// size come from a cache, so a registry HEAD check never reads a file.
type ModelLayer struct {
	Files  []ModelFile
	digest v1.Hash
	size   int64
	// cacheDir and key name the remembered digest, dropped when the
	// stream turns out other.
	cacheDir, key string
	// pieces alternate: header bytes, then a file (path) and its padding.
	pieces []piece
}

type piece struct {
	header []byte
	file   ModelFile
	// stamp is the file's when the layer's digest was taken or found:
	// streaming it again first checks the file still has it.
	stamp models.Stamp
	pad   int64
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
		p := piece{header: header, file: f, pad: (512 - fi.Size()%512) % 512}
		l.pieces = append(l.pieces, p)
		l.size += int64(len(p.header)) + fi.Size() + p.pad
	}
	l.size += tarTrailer
	key := ModelLayerKey(files, modTime)
	l.cacheDir, l.key = cacheDir, key
	stamps, err := stampFiles(files)
	if err != nil {
		return nil, err
	}
	for i := range l.pieces {
		l.pieces[i].stamp = stamps[i]
	}
	if known, ok := knownModelLayer(cacheDir, key); ok && known.Size == l.size && slices.Equal(known.Files, stamps) {
		l.digest = known.Digest
		return l, nil
	}
	// First time, or a file changed on disk since: read the files, and
	// check each is still the pinned one before its layer is trusted.
	if l.digest, err = l.hash(); err != nil {
		return nil, err
	}
	return l, rememberModelLayer(cacheDir, key, l.digest, l.size, stamps)
}

// hash reads the layer stream once for its digest, checking each file
// against its sha256.
func (l *ModelLayer) hash() (v1.Hash, error) {
	h := sha256.New()
	for i, p := range l.pieces {
		h.Write(p.header)
		f, err := os.Open(p.file.File)
		if err != nil {
			return v1.Hash{}, err
		}
		// The layer's hash and the file's run side by side: one read,
		// and on two cores the time of one hash.
		fh := sha256.New()
		_, err = fanout.Copy(f, h, fh)
		f.Close()
		if err != nil {
			return v1.Hash{}, fmt.Errorf("%s: %w", p.file.File, err)
		}
		if want := l.Files[i].SHA256; want != "" && hex.EncodeToString(fh.Sum(nil)) != want {
			fix := "the stored file changed; remove it to fetch it again"
			if p.file.InPlace {
				fix = "the file changed since it was pinned (by the spec or the lock); put the pinned file back, or take the new one with `comfy-image lock --update MODEL`"
			}
			return v1.Hash{}, fmt.Errorf("%s (%s) has sha256 %s, expected %s: %s",
				p.file.File, l.Files[i].Path, hex.EncodeToString(fh.Sum(nil)), want, fix)
		}
		io.CopyN(h, zeros{}, p.pad)
	}
	io.CopyN(h, zeros{}, tarTrailer)
	return hashOf(h), nil
}

// stampFiles are the files' stamps: when each is as recorded, the files
// are taken as unchanged and not read again.
func stampFiles(files []ModelFile) ([]models.Stamp, error) {
	stamps := make([]models.Stamp, len(files))
	for i, f := range files {
		fi, err := os.Stat(f.File)
		if err != nil {
			return nil, err
		}
		stamps[i] = stampOf(fi, f)
	}
	return stamps, nil
}

// stampOf is a store file's size and mtime, or all of an in-place file's
// stamp (see ModelFile.InPlace).
func stampOf(fi os.FileInfo, f ModelFile) models.Stamp {
	st := models.StampOf(fi)
	if !f.InPlace {
		st = models.Stamp{Size: st.Size, MtimeNs: st.MtimeNs}
	}
	return st
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

// modelLayerInfo is a remembered model layer digest and the stamps of its
// files (sorted by path in the image) when it was computed.
type modelLayerInfo struct {
	Info
	Files []models.Stamp `json:"files,omitempty"`
}

func knownModelLayer(cacheDir, key string) (modelLayerInfo, bool) {
	var known modelLayerInfo
	data, err := os.ReadFile(modelLayerMeta(cacheDir, key))
	return known, err == nil && json.Unmarshal(data, &known) == nil
}

func rememberModelLayer(cacheDir, key string, digest v1.Hash, size int64, stamps []models.Stamp) error {
	data, _ := json.Marshal(modelLayerInfo{
		Info:  Info{Digest: digest, DiffID: digest, Size: size, MediaType: types.OCIUncompressedLayer},
		Files: stamps,
	})
	return fileutil.WriteAtomic(modelLayerMeta(cacheDir, key), data, 0o644)
}

// ModelLayerObserver computes the layer digest of a model file at inImage
// while it downloads (models.Request.Observe), so the file is read once.
// storeFile names the stored file of a sha256: its size and mtime, taken
// when the download is stored, tell a later build it is unchanged.
func ModelLayerObserver(cacheDir, inImage string, modTime time.Time, storeFile func(sha256 string) string) func(int64) (io.Writer, func(string)) {
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
			file := ModelFile{File: storeFile(sha), Path: inImage, SHA256: sha}
			stamps, err := stampFiles([]ModelFile{file})
			if err != nil || stamps[0].Size != size {
				return // NewModelGroupLayer will read the file
			}
			key := ModelLayerKey([]ModelFile{file}, modTime)
			_ = rememberModelLayer(cacheDir, key, hashOf(h), int64(len(header))+size+pad+tarTrailer, stamps)
		}
	}
}

// ModelLayerKey names a model layer by its files' content and paths (sorted
// by path) and the mtime: what its bytes depend on.
func ModelLayerKey(files []ModelFile, modTime time.Time) string {
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
// files are opened one at a time as the stream reaches them. The stream
// hashes its bytes and fails at its end when they are not the digest's.
func (l *ModelLayer) Uncompressed() (io.ReadCloser, error) {
	lr, _ := l.CompressedUnchecked()
	return &verifiedReader{ReadCloser: lr, h: sha256.New(), want: l.digest, bad: l.damaged}, nil
}

// damaged forgets the layer's remembered digest, which its bytes (hashing
// to got) do not have, so the next build reads its files again, and says
// which files changed.
func (l *ModelLayer) damaged(got v1.Hash) error {
	if l.cacheDir != "" {
		os.Remove(modelLayerMeta(l.cacheDir, l.key))
	}
	return fmt.Errorf("model layer %s (%s): its files changed while in use (the bytes hash to %s); run again",
		l.digest, l.names(), got)
}

// StreamDamaged is what a destination that hashed the unchecked stream
// (publish.StreamDamage) reports when the bytes hash to got, not to the
// layer's digest: as the checked stream would, the files are named and
// the remembered digest is forgotten.
func (l *ModelLayer) StreamDamaged(got v1.Hash) error { return &DamagedError{l.damaged(got)} }

// CompressedUnchecked is the layer's stream without the hash over every
// byte (publish.UncheckedStreamer), for a destination that hashes what it
// receives itself: a registry refuses an upload that is not its digest's
// (DIGEST_INVALID), an OCI layout's writer renames no such file. For a
// models image that is a whole SHA-256 pass over every model byte less.
// Each file is still checked against the size and mtime its digest was
// taken with, when it is opened and when it ends (ChangedError): the check
// by which a later build reuses a model layer's digest at all.
func (l *ModelLayer) CompressedUnchecked() (io.ReadCloser, error) {
	var readers []io.Reader
	for _, p := range l.pieces {
		readers = append(readers, bytes.NewReader(p.header), &lazyFile{file: p.file, stamp: p.stamp}, io.LimitReader(zeros{}, p.pad))
	}
	readers = append(readers, io.LimitReader(zeros{}, tarTrailer))
	return &layerReader{Reader: io.MultiReader(readers...), readers: readers}, nil
}

func (l *ModelLayer) names() string {
	var files []string
	for _, f := range l.Files {
		files = append(files, f.File)
	}
	return strings.Join(files, ", ")
}

// lazyFile opens its file on first read, checking it still has the
// stamp its layer's digest was taken with, and checks it again at EOF
// (a write while it was read moves the mtime), then closes it.
type lazyFile struct {
	file  ModelFile
	stamp models.Stamp
	f     *os.File
	done  bool
}

func (z *lazyFile) Read(p []byte) (int, error) {
	if z.done {
		return 0, io.EOF
	}
	if z.f == nil {
		f, err := os.Open(z.file.File)
		if err != nil {
			return 0, err
		}
		if err := checkStamp(f, z.file, z.stamp); err != nil {
			f.Close()
			return 0, err
		}
		z.f = f
	}
	n, err := z.f.Read(p)
	if err == io.EOF {
		if serr := checkStamp(z.f, z.file, z.stamp); serr != nil {
			err = serr
		}
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
