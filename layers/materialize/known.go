package materialize

import (
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Known is a layer known by its digests only: its blob is in every
// registry the image goes to, so writing the image there never reads it.
// part names it in the error of a writer that asks for its bytes.
func Known(info Info, part string) v1.Layer {
	return &knownLayer{info: info, part: part}
}

type knownLayer struct {
	info Info
	part string
}

func (l *knownLayer) Digest() (v1.Hash, error)            { return l.info.Digest, nil }
func (l *knownLayer) DiffID() (v1.Hash, error)            { return l.info.DiffID, nil }
func (l *knownLayer) Size() (int64, error)                { return l.info.Size, nil }
func (l *knownLayer) MediaType() (types.MediaType, error) { return l.info.MediaType, nil }

func (l *knownLayer) Compressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("layer %s (%s) is only in the registry, not in this cache", l.part, l.info.Digest)
}

func (l *knownLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
