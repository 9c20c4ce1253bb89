package layers_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/realize"
)

// A build reads the base while it resolves the lock. When only the base
// is bad, the error names --base; when the spec's repositories fail too,
// the resolution's error is the one reported (as when the base was read
// after it), and the build stops without waiting for anything else.
func TestBaseReadBesideTheLockReportsErrorsInOrder(t *testing.T) {
	v := testsupport.NewVersion(t)
	badBase := "oci:" + filepath.Join(testsupport.TempDir(t), "no-layout") + ":latest"
	buildWith := func(base string) error {
		_, err := layers.Build(context.Background(), load(t, v), layers.BuildOptions{
			Options: realize.Options{CacheDir: testsupport.TempDir(t)}, Base: base, WheelsDir: v.Wheels,
			LookupEnv: func(k string) (string, bool) {
				if k == "HF_ENDPOINT" {
					return v.HF.URL, true
				}
				return os.LookupEnv(k)
			},
			Getenv: func(string) string { return "" },
		})
		return err
	}
	if err := buildWith(badBase); err == nil || !strings.Contains(err.Error(), "--base") {
		t.Fatalf("build on a base that is not there: %v; want an error naming --base", err)
	}
	gone := v.Nodes["ComfyUI-KJNodes"].Dir
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{badBase, testsupport.SyntheticBase(t)} {
		err := buildWith(base)
		if err == nil || strings.Contains(err.Error(), "--base") || !strings.Contains(err.Error(), "ComfyUI-KJNodes") {
			t.Errorf("build of a spec whose node repository is gone, base %s: %v; want the node's error", base, err)
		}
	}
}
