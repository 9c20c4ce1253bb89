package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/internal/parallel"
)

// Layout publishes into an OCI image layout directory, tagging images with
// the org.opencontainers.image.ref.name annotation. Several builds may
// write one layout at once: each holds a file lock on it while it writes,
// and index.json is replaced atomically.
type Layout struct {
	dir string
	o   options
}

// NewLayout publishes into the layout at dir, made when missing.
func NewLayout(dir string, opts ...Option) *Layout {
	return &Layout{dir: dir, o: makeOptions(opts...)}
}

// lockName is the layout's lock file; it sits in the layout folder, where
// OCI tools ignore files they do not know.
const lockName = "index.json.lock"

// Publish writes img's blobs and points tag at it, replacing the image the
// tag pointed at before.
func (l *Layout) Publish(ctx context.Context, img v1.Image, tag string) (name.Reference, error) {
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, err
	}
	lock := flock.New(filepath.Join(l.dir, lockName))
	if _, err := lock.TryLockContext(ctx, 50*time.Millisecond); err != nil {
		return nil, fmt.Errorf("oci:%s: lock: %w", l.dir, err)
	}
	defer lock.Unlock()
	p, err := l.open()
	if err != nil {
		return nil, fmt.Errorf("oci:%s: %w", l.dir, err)
	}
	if err := l.writeImage(ctx, p, img); err != nil {
		return nil, fmt.Errorf("oci:%s: %w", l.dir, err)
	}
	desc, err := l.tag(p, img, tag)
	if err != nil {
		return nil, fmt.Errorf("oci:%s: %w", l.dir, err)
	}
	fmt.Fprintf(l.o.log, "wrote oci:%s:%s@%s\n", l.dir, tag, desc.Digest)
	// A layout has no registry: the reference only carries the digest.
	return name.NewDigest("oci-layout@"+desc.Digest.String(), name.WithDefaultRegistry("local"))
}

// LayoutHolds tells whether the OCI layout at dir holds the blob d of size
// bytes: its file is there with that size, the check go-containerregistry's
// layout writer makes before it writes a blob.
func LayoutHolds(dir string, d v1.Hash, size int64) bool {
	fi, err := os.Stat(filepath.Join(dir, "blobs", d.Algorithm, d.Hex))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

// writeImage writes the blobs of img the layout lacks, then its config and
// manifest. layout.Path.WriteImage opens every layer's stream before it
// looks for the blob file, which makes a lazy layer pack; here a layer
// whose blob is there is never asked for its bytes, and those written
// (at most parallel.Packs at once: each may pack as it is read) go
// through a temporary file checked against the layer's digest.
func (l *Layout) writeImage(ctx context.Context, p layout.Path, img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var todo []v1.Layer
	seen := map[v1.Hash]bool{}
	for _, layer := range layers {
		d, err := layer.Digest()
		if err != nil {
			return err
		}
		size, err := layer.Size()
		if err != nil {
			return err
		}
		if seen[d] || LayoutHolds(l.dir, d, size) {
			continue
		}
		seen[d] = true
		todo = append(todo, layer)
	}
	// Every layer is tried, as layout.WriteImage does: a damaged cached
	// layer is dropped when it is read, so one run finds them all.
	err = parallel.Each(ctx, len(todo), parallel.Packs, func(_ context.Context, i int) error {
		return l.writeLayer(todo[i])
	})
	if err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := p.WriteBlob(cfgName, io.NopCloser(bytes.NewReader(cfg))); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	return p.WriteBlob(d, io.NopCloser(bytes.NewReader(manifest)))
}

// writeLayer writes a layer's compressed bytes to its blob file through
// a temporary file, renamed only when the bytes have the layer's digest
// and size: no blob is ever under a digest it does not have.
func (l *Layout) writeLayer(layer v1.Layer) error {
	d, err := layer.Digest()
	if err != nil {
		return err
	}
	size, err := layer.Size()
	if err != nil {
		return err
	}
	dir := filepath.Join(l.dir, "blobs", d.Algorithm)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	open := layer.Compressed
	us, unchecked := layer.(UncheckedStreamer)
	if unchecked {
		open = us.CompressedUnchecked // WriteChecked hashes the bytes
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	}
	defer rc.Close()
	var bad *fileutil.MismatchError
	switch err := fileutil.WriteChecked(filepath.Join(dir, d.Hex), rc, d.Hex, size); {
	case errors.As(err, &bad):
		// The unchecked stream's own account: the files named, the
		// wrong digest forgotten (else every run trusts it again).
		if sd, ok := layer.(StreamDamage); ok && unchecked {
			if got, herr := v1.NewHash("sha256:" + bad.SHA256); herr == nil {
				return fmt.Errorf("layer %s: %w", d, sd.StreamDamaged(got))
			}
		}
		return fmt.Errorf("layer %s: its bytes are %d with sha256:%s, expected %d", d, bad.Size, bad.SHA256, size)
	case err != nil:
		return fmt.Errorf("layer %s: %w", d, err)
	}
	return nil
}

// open opens the layout, making an empty one in a folder without an
// index.json; an index.json that cannot be read is an error, never
// overwritten.
func (l *Layout) open() (layout.Path, error) {
	_, err := os.Stat(filepath.Join(l.dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		if err := fileutil.WriteAtomic(filepath.Join(l.dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
			return "", err
		}
		empty, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json", Manifests: []v1.Descriptor{}})
		if err := fileutil.WriteAtomic(filepath.Join(l.dir, "index.json"), empty, 0o644); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	return layout.FromPath(l.dir)
}

// tag points tag at img in index.json: the other entries are kept, the
// file is replaced in one rename.
func (l *Layout) tag(p layout.Path, img v1.Image, tag string) (v1.Descriptor, error) {
	idx, err := p.ImageIndex()
	if err != nil {
		return v1.Descriptor{}, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("index.json: %w", err)
	}
	desc, err := imageDescriptor(img)
	if err != nil {
		return v1.Descriptor{}, err
	}
	desc.Annotations = map[string]string{specs.AnnotationRefName: tag}
	kept := []v1.Descriptor{}
	for _, d := range m.Manifests {
		if d.Annotations[specs.AnnotationRefName] != tag {
			kept = append(kept, d)
		}
	}
	m.Manifests = append(kept, desc)
	data, err := json.Marshal(m)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return desc, fileutil.WriteAtomic(filepath.Join(l.dir, "index.json"), data, 0o644)
}

func imageDescriptor(img v1.Image) (v1.Descriptor, error) {
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := img.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: size}, nil
}

// Close has nothing to finish for a layout.
func (l *Layout) Close() error { return nil }
