package publish_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/comfy-image/comfy-image/layers/publish"
)

// Builds writing one OCI layout at once keep every tag and a valid
// index.json (issue 8 point 7).
func TestConcurrentPublishesIntoOneLayoutKeepEveryTag(t *testing.T) {
	dir := filepath.Join(testsupport.TempDir(t), "oci")
	const writers, rounds = 4, 5
	images := map[string]v1.Image{}
	for w := 0; w < writers; w++ {
		for r := 0; r < rounds; r++ {
			images[fmt.Sprintf("v%d-%d", w, r)] = randomImage(t, 2)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				// A publisher per write, as separate builds would have.
				tag := fmt.Sprintf("v%d-%d", w, r)
				if _, err := publish.NewLayout(dir).Publish(context.Background(), images[tag], tag); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatalf("index.json is not valid JSON: %v\n%s", err, raw)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	byTag := map[string]v1.Hash{}
	for _, d := range m.Manifests {
		byTag[d.Annotations[specs.AnnotationRefName]] = d.Digest
	}
	for tag, img := range images {
		if byTag[tag] != digest(t, img) {
			t.Errorf("tag %s: %s in index.json, want %s", tag, byTag[tag], digest(t, img))
			continue
		}
		if _, err := idx.Image(byTag[tag]); err != nil {
			t.Errorf("tag %s: %v", tag, err)
		}
	}
	if len(m.Manifests) != len(images) {
		t.Errorf("%d entries in index.json, want %d", len(m.Manifests), len(images))
	}
	if _, err := exec.LookPath("skopeo"); err == nil {
		for _, tag := range []string{"v0-0", fmt.Sprintf("v%d-%d", writers-1, rounds-1)} {
			if out, err := exec.Command("skopeo", "inspect", "oci:"+dir+":"+tag).CombinedOutput(); err != nil {
				t.Errorf("skopeo inspect oci:%s:%s: %v\n%s", dir, tag, err, out)
			}
		}
	}
}

// Publishing a tag again replaces it and keeps the others.
func TestLayoutRetagReplacesOnlyThatTag(t *testing.T) {
	dir := testsupport.TempDir(t)
	a, b, c := randomImage(t, 1), randomImage(t, 1), randomImage(t, 1)
	l := publish.NewLayout(dir)
	for _, step := range []struct {
		img v1.Image
		tag string
	}{{a, "app"}, {b, "models"}, {c, "app"}} {
		if _, err := l.Publish(context.Background(), step.img, step.tag); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := layout.FromPath(dir)
	idx, _ := p.ImageIndex()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]v1.Hash{}
	for _, d := range m.Manifests {
		got[d.Annotations[specs.AnnotationRefName]] = d.Digest
	}
	if len(m.Manifests) != 2 || got["app"] != digest(t, c) || got["models"] != digest(t, b) {
		t.Fatalf("index %v", got)
	}
}
