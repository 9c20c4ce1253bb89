package publish_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/comfy-image/comfy-image/layers/publish"
)

// damagedSource is a layer read from one source whose bytes changed after
// its digest was taken (as a model file under an unchanged stamp): both
// its unchecked stream and its checked one read those bytes, and the
// checked one says so at its end.
type damagedSource struct {
	v1.Layer
	data []byte
}

func (l *damagedSource) CompressedUnchecked() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}

func (l *damagedSource) VerifiesStream() bool { return true }

func (l *damagedSource) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(bytes.NewReader(l.data), errAtEOF{})), nil
}

// Damaged local bytes streamed unchecked are refused by the registry
// (DIGEST_INVALID), which the publisher retries, since bytes can be
// damaged on the way. A retry must not send the same damaged bytes again
// at every attempt (a model layer is GBs, the backoff tens of seconds):
// it reads the checked stream, which finds the damage at once, reported
// as damage in the layer's own words.
func TestDamagedUncheckedBytesAreNotSentAtEveryAttempt(t *testing.T) {
	sent, err := pushDamaged(t, func(src v1.Layer, data []byte) v1.Layer { return &damagedSource{Layer: src, data: data} })
	var le *publish.LayerError
	var changed *changedBytes
	if !errors.As(err, &le) || !le.Damaged() || !errors.As(err, &changed) {
		t.Fatalf("push of a layer whose source changed: %v; want damage in the layer's words", err)
	}
	if sent > 2 {
		t.Errorf("damaged bytes were sent %d times; want the unchecked attempt and one checked", sent)
	}
}
