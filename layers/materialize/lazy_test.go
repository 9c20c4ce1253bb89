package materialize_test

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/materialize"
)

// packed packs one small file into a fresh layer cache.
func packed(t *testing.T, content string) (materialize.Cache, func() (v1.Layer, error)) {
	t.Helper()
	c := materialize.Cache{Dir: testsupport.TempDir(t)}
	return c, func() (v1.Layer, error) {
		l, _, err := c.Build(context.Background(), materialize.Key(content), materialize.Gzip, materialize.TarOptions{ModTime: time.Unix(0, 0)},
			func() ([]materialize.Entry, error) {
				return []materialize.Entry{materialize.BytesEntry("opt/x.txt", 0o644, []byte(content))}, nil
			})
		return l, err
	}
}

func infoOf(t *testing.T, l v1.Layer) materialize.Info {
	t.Helper()
	d, _ := l.Digest()
	diff, _ := l.DiffID()
	size, _ := l.Size()
	mt, _ := l.MediaType()
	return materialize.Info{Digest: d, DiffID: diff, Size: size, MediaType: mt}
}

// TestLazyLayerPacksOnlyWhenItsBytesAreAsked checks a lazy layer answers
// its digests without packing, packs once when its bytes are read, and
// gives the bytes of the known digest.
func TestLazyLayerPacksOnlyWhenItsBytesAreAsked(t *testing.T) {
	_, pack := packed(t, "reference")
	ref, err := pack()
	if err != nil {
		t.Fatal(err)
	}
	info := infoOf(t, ref)
	_, pack = packed(t, "reference") // another cache: packing is real work
	calls := 0
	l := materialize.Lazy(info, "node demo", func() (v1.Layer, error) { calls++; return pack() })
	if d, _ := l.Digest(); d != info.Digest {
		t.Errorf("digest %s, want %s", d, info.Digest)
	}
	if size, _ := l.Size(); size != info.Size {
		t.Errorf("size %d, want %d", size, info.Size)
	}
	if calls != 0 {
		t.Fatalf("packed %d times before any byte was asked", calls)
	}
	for range 2 {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		h, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || h != info.Digest || n != info.Size {
			t.Fatalf("bytes %s (%d), %v; want %s (%d)", h, n, err, info.Digest, info.Size)
		}
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(rc)
	rc.Close()
	if h != info.DiffID {
		t.Errorf("uncompressed %s, want the diff id %s", h, info.DiffID)
	}
	if calls != 1 {
		t.Errorf("packed %d times, want once", calls)
	}
}

// TestLazyLayerRefusesOtherBytes checks a part that packs to another
// digest than the one recorded is an error naming the part, and no bytes
// are given.
func TestLazyLayerRefusesOtherBytes(t *testing.T) {
	_, recorded := packed(t, "as recorded")
	ref, err := recorded()
	if err != nil {
		t.Fatal(err)
	}
	_, changed := packed(t, "changed since")
	l := materialize.Lazy(infoOf(t, ref), "node demo", changed)
	rc, err := l.Compressed()
	if err == nil {
		rc.Close()
		t.Fatal("a layer packed to another digest gave its bytes")
	}
	if !strings.Contains(err.Error(), "node demo") {
		t.Errorf("error %q does not name the part", err)
	}
	if _, err := l.Uncompressed(); err == nil {
		t.Error("Uncompressed gave the other bytes")
	}
	if _, err := materialize.Lazy(infoOf(t, ref), "config", nil).Compressed(); err == nil || !strings.Contains(err.Error(), "config") {
		t.Errorf("a lazy layer that cannot pack: %v", err)
	}
}
