package layers_test

import (
	"context"
	"errors"
	"fmt"
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
		_, err := layers.Build(context.Background(), load(t, v), testBuildOptions(t, v, base))
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

// Core and nodes are packed side by side; the error does not depend on
// which finished first: every node that fails is named, in the spec's
// order, and a failing core comes before them. (With --locked and an
// emptied cache, the repositories are first needed when their parts are
// packed.)
func TestPackErrorsAreNamedInTheSpecsOrder(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	o := testBuildOptions(t, v, base)
	if _, err := layers.Build(context.Background(), load(t, v), o); err != nil {
		t.Fatal(err)
	}
	o.Locked = true
	gone := func(dirs ...string) {
		for _, d := range append(dirs, filepath.Join(o.CacheDir, "git"), filepath.Join(o.CacheDir, "layers")) {
			if err := os.RemoveAll(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	gone(v.Nodes["ComfyUI-GGUF"].Dir, v.Nodes["ComfyUI-KJNodes"].Dir)
	_, err := layers.Build(context.Background(), load(t, v), o)
	msg := fmt.Sprint(err)
	gguf, kj := strings.Index(msg, "gguf"), strings.Index(msg, "ComfyUI-KJNodes")
	if err == nil || gguf < 0 || kj < 0 || gguf > kj {
		t.Fatalf("locked build with two node repositories gone: %v; want both named, gguf first", err)
	}
	gone(v.Core.Dir)
	_, err = layers.Build(context.Background(), load(t, v), o)
	if msg := fmt.Sprint(err); err == nil || !strings.Contains(msg, "core") || strings.Contains(msg, "gguf") {
		t.Fatalf("locked build with the core's and two nodes' repositories gone: %v; want the core's error alone", err)
	}
}

// A base read is stopped by its context: a build whose lock failed does
// not wait for it, and nothing is cached of it.
func TestBaseReadStopsWithItsContext(t *testing.T) {
	img := testsupport.SyntheticBaseImage(t, testsupport.SyntheticBase(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cache := testsupport.TempDir(t)
	if _, err := layers.ReadBase(ctx, img, cache); !errors.Is(err, context.Canceled) {
		t.Fatalf("base read with an ended context: %v; want context.Canceled", err)
	}
	if cached, _ := filepath.Glob(filepath.Join(cache, "bases", "*.json")); len(cached) > 0 {
		t.Errorf("facts of a stopped base read were cached: %v", cached)
	}
}

// testBuildOptions builds v on base with a fresh cache, its wheels and its
// hub.
func testBuildOptions(t *testing.T, v *testsupport.Version, base string) layers.BuildOptions {
	return layers.BuildOptions{
		Options: realize.Options{CacheDir: testsupport.TempDir(t)}, Base: base, WheelsDir: v.Wheels,
		LookupEnv: func(k string) (string, bool) {
			if k == "HF_ENDPOINT" {
				return v.HF.URL, true
			}
			return os.LookupEnv(k)
		},
		Getenv: func(string) string { return "" },
	}
}
