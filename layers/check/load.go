package check

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Load puts img into the engine's local storage as ref (a docker-archive
// through `load`, which podman and docker both read), so a freshly built
// image can be checked wherever its outputs went.
func Load(ctx context.Context, engineName string, img v1.Image, ref string) error {
	engine, err := Engine(engineName)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("check: image name %q: %w", ref, err)
	}
	dir, err := os.MkdirTemp("", "comfy-image-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "image.tar")
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("check: writing %s for %s: %w", ref, filepath.Base(engine), err)
	}
	if out, err := exec.CommandContext(ctx, engine, "load", "-q", "-i", file).CombinedOutput(); err != nil {
		return fmt.Errorf("%s load %s: %v: %s", filepath.Base(engine), ref, err, strings.TrimSpace(string(out)))
	}
	return nil
}
