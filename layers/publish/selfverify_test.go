package publish_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
	patches, err := pushDamaged(t, func(src v1.Layer, data []byte) v1.Layer { return &selfChecked{Layer: src, data: data} })
	var le *publish.LayerError
	var changed *changedBytes
	if !errors.As(err, &le) || !le.Damaged() || !errors.As(err, &changed) {
		t.Fatalf("push of a self-verifying layer whose bytes changed: %v", err)
	}
	if patches > 1 {
		t.Errorf("damaged bytes were sent %d times", patches)
	}
}

// pushDamaged pushes, through a fault proxy, the layer wrap makes of a
// random layer and its bytes with one flipped: the push's error and how
// many PATCHes (bodies sent) the registry saw.
func pushDamaged(t *testing.T, wrap func(src v1.Layer, data []byte) v1.Layer) (patches int, err error) {
	t.Helper()
	reg := testsupport.NewRegistry(t)
	proxy := testsupport.NewFaultProxy(t, reg.Host)
	src, _ := random.Layer(8192, types.OCILayer)
	rc, _ := src.Compressed()
	data, _ := io.ReadAll(rc)
	data[len(data)/2] ^= 0xFF
	img, err := mutate.AppendLayers(empty.Image, wrap(src, data))
	if err != nil {
		t.Fatal(err)
	}
	_, err = publish.NewRegistry(repo(t, proxy.Host, "comfy/demo"), fastRetries, publish.WithJobs(1)).Publish(context.Background(), img, "v1")
	for _, r := range proxy.Requests() {
		if r.Method == http.MethodPatch {
			patches++
		}
	}
	return patches, err
}

// uncheckedOnly is a layer offering an unchecked stream (as the model
// layers of layers/materialize do) whose bytes were damaged after its
// digest was taken; its checked stream would say so, its unchecked one
// cannot.
type uncheckedOnly struct {
	v1.Layer
	data []byte
}

func (l *uncheckedOnly) CompressedUnchecked() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}

// Compressed reads the same bytes (one source): a retry reads them
// checked (against the digest, by the publisher).
func (l *uncheckedOnly) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}

// A layer streamed unchecked is never taken in under its digest with other
// bytes: the registry hashes what it receives and refuses it (reported as
// damage), the layout's writer renames no such blob file. And the bytes
// sent are the unchecked stream's, not the checked one's.
func TestUncheckedStreamIsCheckedByTheDestination(t *testing.T) {
	src, _ := random.Layer(8192, types.OCILayer)
	rc, _ := src.Compressed()
	good, _ := io.ReadAll(rc)
	d, _ := src.Digest()
	damaged := append([]byte(nil), good...)
	damaged[len(damaged)/2] ^= 0xFF
	for _, tc := range []struct {
		name  string
		data  []byte
		takes bool
	}{{"intact", good, true}, {"damaged", damaged, false}} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := mutate.AppendLayers(empty.Image, &uncheckedOnly{Layer: src, data: tc.data})
			if err != nil {
				t.Fatal(err)
			}
			reg := testsupport.NewRegistry(t)
			r := repo(t, reg.Host, "comfy/demo")
			_, err = publish.NewRegistry(r, fastRetries, publish.WithJobs(1)).Publish(context.Background(), img, "v1")
			var le *publish.LayerError
			switch {
			case tc.takes && err != nil:
				t.Fatalf("push of intact unchecked bytes: %v", err)
			case !tc.takes && (!errors.As(err, &le) || !le.Damaged()):
				t.Fatalf("push of damaged unchecked bytes: %v; want a LayerError reporting damage", err)
			}
			has, err := blobBytes(r.Digest(d.String()))
			if tc.takes != (err == nil && bytes.Equal(has, good)) {
				t.Errorf("registry blob %s after the push: %d bytes, %v", d, len(has), err)
			}

			dir := testsupport.TempDir(t)
			_, err = publish.NewLayout(dir).Publish(context.Background(), img, "v1")
			if tc.takes != (err == nil) {
				t.Fatalf("layout write of %s unchecked bytes: %v", tc.name, err)
			}
			if _, serr := os.Stat(filepath.Join(dir, "blobs", "sha256", d.Hex)); tc.takes != (serr == nil) {
				t.Errorf("layout blob %s after the write: %v", d.Hex, serr)
			}
		})
	}
}

// blobBytes reads a blob from a registry (go-containerregistry checks
// the bytes against the digest as they come).
func blobBytes(ref name.Digest) ([]byte, error) {
	l, err := remote.Layer(ref)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
