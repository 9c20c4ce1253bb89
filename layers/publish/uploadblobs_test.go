package publish_test

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/publish"
)

// StartUploadBlobs puts an image's blobs in the repository and moves no tag;
// the Publish that follows pushes the manifest and asks nothing more about
// the blobs, so the early upload costs no request a plain push would not.
func TestUploadBlobsFirstThenPublishOnlyTheManifest(t *testing.T) {
	ctx := context.Background()
	reg := testsupport.NewRegistry(t)
	img := randomImage(t, 3)
	r := repo(t, reg.Host, "comfy/demo")
	p := publish.NewRegistry(r)
	if err := p.StartUploadBlobs(ctx, img, "v1", nil)(); err != nil {
		t.Fatal(err)
	}
	if n, _ := reg.Uploads(); n != 4 {
		t.Fatalf("%d blobs uploaded, want 3 layers and the config", n)
	}
	if _, err := remote.Head(r.Tag("v1")); err == nil {
		t.Fatal("StartUploadBlobs moved the tag before the image was published")
	}
	before := len(reg.Requests())
	p.Saw("v1", v1.Hash{}) // the build found the tag absent
	if _, err := p.Publish(ctx, img, "v1"); err != nil {
		t.Fatal(err)
	}
	var asked []string
	for _, req := range reg.Requests()[before:] {
		if strings.Contains(req.Path, "/blobs/") {
			asked = append(asked, req.Method+" "+req.Path)
		}
	}
	if len(asked) > 0 {
		t.Errorf("Publish asked again about blobs StartUploadBlobs put there: %v", asked)
	}
	got, err := remote.Image(r.Tag("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); gd != digest(t, img) {
		t.Fatal("the tag names another image")
	}
}
