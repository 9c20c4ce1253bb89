package publish

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DamagedError says the bytes we hold for a blob do not hash to its
// digest (a damaged cache file): no retry can help, the layer must be
// made again.
type DamagedError struct {
	Digest v1.Hash
	Got    string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("the local bytes of %s hash to %s: damaged", e.Digest, e.Got)
}

// SelfVerifying is a layer whose stream hashes its own bytes and fails at
// its end, before the registry is asked to commit them, when they are not
// its digest's (the cached and model layers of layers/materialize). An
// upload does not hash such a stream a second time: for a models image
// that is a whole SHA-256 pass over every model byte saved. Its error
// should report DamagedBytes, so the build packs the layer again.
type SelfVerifying interface {
	VerifiesStream() bool
}

// UncheckedStreamer is a layer that can also stream its bytes without
// hashing them, for a destination that hashes them itself: a registry
// refuses an upload whose bytes are not its digest's (DIGEST_INVALID,
// which a LayerError reports as damage), and an OCI layout's writer
// (fileutil.WriteChecked) renames no blob file whose bytes are not its
// name's. The model layers of layers/materialize are such layers: for a
// models image that is a whole SHA-256 pass over every model byte saved.
// A tarball, which checks nothing, reads the layer's checked stream.
type UncheckedStreamer interface {
	CompressedUnchecked() (io.ReadCloser, error)
}

// StreamDamage is an UncheckedStreamer that can say what it means when a
// destination found its unchecked bytes to hash to got, not to its
// digest: the error to report (naming its files), once it has forgotten
// what made it trust the digest, so that the next build reads them again.
// Without it the wrong digest would be trusted again on every run.
type StreamDamage interface {
	StreamDamaged(got v1.Hash) error
}

// verifyingReader hashes a blob as it is uploaded and fails the upload at
// its end when the bytes are not the digest's, before the registry is
// asked to commit them.
type verifyingReader struct {
	io.ReadCloser
	want v1.Hash
	h    hash.Hash
}

func newVerifyingReader(rc io.ReadCloser, want v1.Hash) io.ReadCloser {
	if want.Algorithm != "sha256" {
		return rc
	}
	return &verifyingReader{ReadCloser: rc, want: want, h: sha256.New()}
}

func (r *verifyingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.h.Write(p[:n])
	if err == io.EOF {
		if got := fmt.Sprintf("%x", r.h.Sum(nil)); got != r.want.Hex {
			return n, &DamagedError{Digest: r.want, Got: "sha256:" + got}
		}
	}
	return n, err
}
