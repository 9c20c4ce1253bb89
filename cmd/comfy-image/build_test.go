package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

func TestBuildDryRunWritesNothing(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := filepath.Join(v.Dir, "cache")
	reg := testsupport.NewRegistry(t)
	ref := reg.Host + "/comfy/demo:v1"
	args := []string{"build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels, "--push", ref}
	// Before any lock: the plan says what would be resolved.
	res := testsupport.Run(t, v.Dir, v.Env(cache), append(args, "--dry-run")...)
	if res.Code != 0 || !strings.Contains(res.Stdout, "would clone") {
		t.Fatalf("exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Fatal("--dry-run created the cache")
	}
	if res := testsupport.Run(t, v.Dir, v.Env(cache), args...); res.Code != 0 {
		t.Fatalf("build: %s", res.Stderr)
	}
	uploads, _ := reg.Uploads()
	// After a build: every layer is reused and already in the registry.
	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"fix.py": "1"})
	if r := testsupport.Run(t, v.Dir, v.Env(cache), "lock", "--spec", v.SpecFile); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	res = testsupport.Run(t, v.Dir, v.Env(cache), append(args, "--dry-run")...)
	if res.Code != 0 {
		t.Fatalf("dry run: %s", res.Stderr)
	}
	for _, want := range []string{"reuse   core", "reuse   node    gguf", "pack    node    ComfyUI-KJNodes", "already there", "in the cache"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, res.Stdout)
		}
	}
	if n, _ := reg.Uploads(); n != uploads {
		t.Fatal("--dry-run pushed")
	}
}

func TestBuildBadUsage(t *testing.T) {
	v := testsupport.NewVersion(t)
	for _, args := range [][]string{
		{"build", "--spec", v.SpecFile},
		{"build", "--spec", v.SpecFile, "--base", "oci:"},
		{"build", "--spec", v.SpecFile, "--base", "x", "--models", "some"},
		{"build", "--spec", v.SpecFile, "--base", "x", "--compression", "lz4"},
		{"build", "--spec", v.SpecFile, "--base", "x", "--push", "oci:/tmp/x"},
		{"inspect"},
	} {
		if res := testsupport.Run(t, v.Dir, nil, args...); res.Code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, res.Code, res.Stderr)
		}
	}
	res := testsupport.Run(t, v.Dir, v.Env(t.TempDir()), "build", "--spec", v.SpecFile, "--base", "oci:"+t.TempDir()+":none")
	if res.Code != 1 || !strings.Contains(res.Stderr, "--base") {
		t.Errorf("missing base: exit %d\n%s", res.Code, res.Stderr)
	}
}
