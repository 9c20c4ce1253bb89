package materialize

import (
	"fmt"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Lazy is the layer of a part whose digests are already known (from the
// layer cache's record, or the labels of an image at the push
// reference or --cache-from): Digest, DiffID, Size and MediaType answer
// from info without packing, so a publisher whose destination holds the
// blob asks for no bytes. Compressed or Uncompressed packs the part the
// first time (pack, usually Cache.Build) and checks the packed layer is
// the known one: another digest is an error naming part, never a blob
// written under a digest it does not have.
func Lazy(info Info, part string, pack func() (v1.Layer, error)) v1.Layer {
	return &lazyLayer{info: info, part: part, pack: pack}
}

type lazyLayer struct {
	info Info
	part string
	pack func() (v1.Layer, error)

	once   sync.Once
	packed v1.Layer
	err    error
}

func (l *lazyLayer) Digest() (v1.Hash, error)            { return l.info.Digest, nil }
func (l *lazyLayer) DiffID() (v1.Hash, error)            { return l.info.DiffID, nil }
func (l *lazyLayer) Size() (int64, error)                { return l.info.Size, nil }
func (l *lazyLayer) MediaType() (types.MediaType, error) { return l.info.MediaType, nil }

func (l *lazyLayer) Compressed() (io.ReadCloser, error) {
	packed, err := l.layer()
	if err != nil {
		return nil, err
	}
	return packed.Compressed()
}

func (l *lazyLayer) Uncompressed() (io.ReadCloser, error) {
	packed, err := l.layer()
	if err != nil {
		return nil, err
	}
	return packed.Uncompressed()
}

// layer packs the part once and checks it against what was known.
func (l *lazyLayer) layer() (v1.Layer, error) {
	l.once.Do(func() {
		if l.pack == nil {
			l.err = fmt.Errorf("layer %s (%s): its bytes are not at hand and it cannot be packed here", l.part, l.info.Digest)
			return
		}
		packed, err := l.pack()
		if err != nil {
			l.err = fmt.Errorf("pack %s: %w", l.part, err)
			return
		}
		d, err := packed.Digest()
		if err != nil {
			l.err = fmt.Errorf("pack %s: %w", l.part, err)
			return
		}
		diff, err := packed.DiffID()
		if err != nil {
			l.err = fmt.Errorf("pack %s: %w", l.part, err)
			return
		}
		if d != l.info.Digest || diff != l.info.DiffID {
			l.err = fmt.Errorf("%s packed as %s (diff id %s), but the image names it %s (diff id %s): its sources or the packer changed since it was recorded; rebuild without the record (push anew, without --cache-from)",
				l.part, d, diff, l.info.Digest, l.info.DiffID)
			return
		}
		l.packed = packed
	})
	return l.packed, l.err
}
