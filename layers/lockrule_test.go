package layers_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

// TestConfigDoesNotDependOnTheCache builds from an empty cache and from one
// a realize warmed first (models pinned, a host Python set in the lock):
// the same inputs must give the same manifests, whatever the models mode.
func TestConfigDoesNotDependOnTheCache(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	warm := testsupport.TempDir(t)
	err := realize.Realize(context.Background(), load(t, v), realize.RealizeOptions{
		Options: realize.Options{CacheDir: warm}, Target: filepath.Join(testsupport.TempDir(t), "target"), WheelsDir: v.Wheels,
		LookupEnv: func(k string) (string, bool) {
			if k == "HF_ENDPOINT" {
				return v.HF.URL, true
			}
			return os.LookupEnv(k) // HF_TOKEN where the hub wants one
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []plan.ModelsMode{plan.Skip, plan.Separate, plan.Bake} {
		t.Run(string(mode), func(t *testing.T) {
			set := func(o *layers.BuildOptions) { o.Models = mode }
			cold := build(t, v, base, testsupport.TempDir(t), set)
			hot := build(t, v, base, warm, set)
			if a, b := digestOf(t, cold.App), digestOf(t, hot.App); a != b {
				ca, _ := cold.App.RawConfigFile()
				cb, _ := hot.App.RawConfigFile()
				t.Fatalf("app %s from an empty cache, %s from a warm one:\n%s\n%s", a, b, ca, cb)
			}
			if mode == "separate" && digestOf(t, cold.Models) != digestOf(t, hot.Models) {
				t.Fatal("models image differs between an empty and a warm cache")
			}
		})
	}
}

// TestLockedBuildRefusesAChangedWheel: a wheel in --wheels-dir whose bytes
// differ from the lock is named, not replaced by the cached copy.
func TestLockedBuildRefusesAChangedWheel(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := testsupport.TempDir(t)
	build(t, v, base, cache, nil)
	wheel := testsupport.BuildWheel(t, v.Wheels, testsupport.Wheel{Name: "gamma", Version: "2.0", Files: map[string]string{"evil.py": "x = 1\n"}})
	// Same cache (its wheels/ holds the good copy), the venv layer dropped.
	o := layers.BuildOptions{
		Options: realize.Options{CacheDir: testsupport.TempDir(t), LockFile: versions.LockPath(cache, "demo")},
		Base:    base, WheelsDir: v.Wheels, Locked: true, Models: "skip",
		Getenv: func(string) string { return "" },
	}
	_, err := layers.Build(context.Background(), load(t, v), o)
	if err == nil || !strings.Contains(err.Error(), wheel) || !strings.Contains(err.Error(), "1 wheel differs from the lock") {
		t.Fatalf("changed wheel: %v", err)
	}
}
