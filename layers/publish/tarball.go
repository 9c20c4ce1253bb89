package publish

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/comfy-image/comfy-image/internal/progress"
)

// Tarball collects images and writes them, at Close, into one
// docker-loadable tarball (`docker load` / `podman load`), each tagged
// REPO:TAG.
type Tarball struct {
	file string
	repo string
	o    options

	mu   sync.Mutex
	refs map[name.Reference]v1.Image
}

// NewTarball writes file with images tagged repo:TAG (repo is lowercased,
// as Docker names must be).
func NewTarball(file, repo string, opts ...Option) *Tarball {
	return &Tarball{file: file, repo: strings.ToLower(repo), o: makeOptions(opts...), refs: map[name.Reference]v1.Image{}}
}

// Publish adds img under repo:tag; nothing is written before Close.
func (t *Tarball) Publish(_ context.Context, img v1.Image, tag string) (name.Reference, error) {
	ref, err := name.NewTag(t.repo + ":" + tag)
	if err != nil {
		return nil, fmt.Errorf("tar:%s: %w", t.file, err)
	}
	t.mu.Lock()
	t.refs[ref] = img
	t.mu.Unlock()
	return ref, nil
}

// Close writes the tarball through a temporary file and a rename.
func (t *Tarball) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.refs) == 0 {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(t.file), "."+filepath.Base(t.file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("tar:%s: %w", t.file, err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := tarball.MultiRefWriteToFile(tmp.Name(), t.refs); err != nil {
		return fmt.Errorf("tar:%s: %w", t.file, err)
	}
	if err := os.Rename(tmp.Name(), t.file); err != nil {
		return fmt.Errorf("tar:%s: %w", t.file, err)
	}
	fmt.Fprintf(t.o.log, "wrote tar:%s (%s)\n", t.file, progress.Count(len(t.refs), "image", "images"))
	t.refs = map[name.Reference]v1.Image{}
	return nil
}
