package publish_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/publish"
)

// selfChecked is a layer that checks its own stream (as the cached and
// model layers of layers/materialize do): its bytes were damaged after
// its digest was taken, and its stream says so at its end.
type selfChecked struct {
	v1.Layer
	data []byte
}

func (l *selfChecked) VerifiesStream() bool { return true }

func (l *selfChecked) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(bytes.NewReader(l.data), errAtEOF{})), nil
}

type errAtEOF struct{}

func (errAtEOF) Read([]byte) (int, error) { return 0, &changedBytes{} }

type changedBytes struct{}

func (*changedBytes) Error() string      { return "the layer's file changed while in use" }
func (*changedBytes) DamagedBytes() bool { return true }

// A layer that verifies its own stream is uploaded without a second hash,
// and its damage is reported as damage (the build packs it again), with
// the layer's own words and without retries.
func TestSelfVerifyingLayerDamageIsNotRetried(t *testing.T) {
	reg := testsupport.NewRegistry(t)
	proxy := testsupport.NewFaultProxy(t, reg.Host)
	src, _ := random.Layer(8192, types.OCILayer)
	rc, _ := src.Compressed()
	data, _ := io.ReadAll(rc)
	data[len(data)/2] ^= 0xFF
	img, err := mutate.AppendLayers(empty.Image, &selfChecked{Layer: src, data: data})
	if err != nil {
		t.Fatal(err)
	}
	_, err = publish.NewRegistry(repo(t, proxy.Host, "comfy/demo"), fastRetries, publish.WithJobs(1)).Publish(context.Background(), img, "v1")
	var le *publish.LayerError
	var changed *changedBytes
	if !errors.As(err, &le) || !le.Damaged() || !errors.As(err, &changed) {
		t.Fatalf("push of a self-verifying layer whose bytes changed: %v", err)
	}
	patches := 0
	for _, r := range proxy.Requests() {
		if r.Method == http.MethodPatch {
			patches++
		}
	}
	if patches > 1 {
		t.Errorf("damaged bytes were sent %d times", patches)
	}
}
