package publish_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/publish"
)

func TestMultiPublishesEverywhereAndProbesFirst(t *testing.T) {
	ctx := context.Background()
	reg := testsupport.NewRegistry(t)
	dir, tar := filepath.Join(testsupport.TempDir(t), "oci"), filepath.Join(testsupport.TempDir(t), "images.tar")
	img := randomImage(t, 2)
	m := publish.Multi(publish.NewLayout(dir), publish.NewTarball(tar, "Demo"), publish.NewRegistry(repo(t, reg.Host, "comfy/demo")))
	if err := publish.Probe(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Publish(ctx, img, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(repo(t, reg.Host, "comfy/demo").Tag("v1")); err != nil {
		t.Errorf("registry: %v", err)
	}
	fromTar, err := tarball.ImageFromPath(tar, nil)
	if err != nil {
		t.Fatalf("tarball: %v", err)
	}
	// A docker tarball keeps the config and the layers, not the manifest.
	got, _ := fromTar.ConfigName()
	want, _ := img.ConfigName()
	if got != want {
		t.Errorf("tarball holds config %s, want %s", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Errorf("layout: %v", err)
	}

	// A dead registry among the destinations fails the probe; nothing has
	// been written to the others.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	other := filepath.Join(testsupport.TempDir(t), "oci")
	m = publish.Multi(publish.NewLayout(other), publish.NewRegistry(repo(t, dead, "comfy/demo")))
	if err := publish.Probe(ctx, m); err == nil {
		t.Fatal("a dead registry passed the probe")
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Error("the probe wrote to the layout")
	}
}
