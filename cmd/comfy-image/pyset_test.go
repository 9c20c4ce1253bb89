package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/versions"
)

// The fresh CI runner: the committed lock moves one node (its
// requirements unchanged), the cache is empty, the image built before is
// at the push reference. Only that node is cloned (for its layer and its
// requirements); ComfyUI's and the other node's requirements come from
// the lock's per-source records; the venv layer is reused; two blobs go up.
func TestLockUpdateThenLockedBuildOnAFreshRunner(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	reg := testsupport.NewRegistry(t)
	ref := reg.Host + "/comfy/demo:v1"
	lockFile := filepath.Join(v.Dir, "versions", "demo.lock.json")
	build := func(cache string, extra ...string) testsupport.Result {
		args := []string{"build", "--spec", v.SpecFile, "--base", base, "--lock", lockFile, "--push", ref}
		return testsupport.Run(t, v.Dir, v.Env(cache), append(args, extra...)...)
	}
	dev := filepath.Join(v.Dir, "dev-cache")
	if res := build(dev, "--wheels-dir", v.Wheels); res.Code != 0 {
		t.Fatalf("first build: %s", res.Stderr)
	}
	l, err := versions.ReadLock(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Python.ImageRequirements) != 3 {
		t.Errorf("the lock records the requirements of %d sources, want 3 (ComfyUI and two nodes): %+v", len(l.Python.ImageRequirements), l.Python.ImageRequirements)
	}

	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"nodes.py": "FIXED = True\n"})
	if res := testsupport.Run(t, v.Dir, v.Env(dev), "lock", "--spec", v.SpecFile, "--lock", lockFile, "--update", "ComfyUI-KJNodes"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	uploads, _ := reg.Uploads()
	// No wheel at hand: the venv's layer must come from the registry.
	ci := filepath.Join(v.Dir, "ci-cache")
	res := build(ci, "--locked", "--wheels-dir", t.TempDir())
	if res.Code != 0 {
		t.Fatalf("CI build: %s\n%s", res.Stdout, res.Stderr)
	}
	if got := testsupport.Mirrors(t, gitcache.Folder(ci)); strings.Join(got, " ") != "KJNodes" && strings.Join(got, " ") != "ComfyUI-KJNodes" {
		t.Errorf("the CI cache holds the mirrors %v, want only the moved node's", got)
	}
	if n, _ := reg.Uploads(); n-uploads != 2 {
		t.Errorf("%d blobs uploaded, want 2 (the node's layer and the config)", n-uploads)
	}
	if regexpVenvPacked.MatchString(res.Stdout+res.Stderr) || !strings.Contains(res.Stdout+res.Stderr, "requirements read again from 1 of 3 repositories") {
		t.Errorf("the venv was not reused from the registry, or more than the moved node's requirements read:\n%s\n%s", res.Stdout, res.Stderr)
	}
}

// withoutRequirements is the fixture's version with no requirements file
// in any repository: its Python set is empty.
func withoutRequirements(t *testing.T) *testsupport.Version {
	v := testsupport.NewVersion(t)
	for _, r := range []*testsupport.Repo{v.Core, v.Nodes["ComfyUI-GGUF"], v.Nodes["ComfyUI-KJNodes"]} {
		r.Git("rm", "-q", "requirements.txt")
		r.Git("commit", "-qm", "no requirements")
	}
	return v
}

// A version without any Python requirement resolves to an empty set; the
// set is resolved all the same, so a finished target stays as it is: no
// new venv, no pip run.
func TestEmptyPythonSetIsResolvedOnce(t *testing.T) {
	v := withoutRequirements(t)
	cache := filepath.Join(v.Dir, "cache")
	target := filepath.Join(v.Dir, "target")
	realize := func(extra ...string) testsupport.Result {
		args := []string{"realize", "--spec", v.SpecFile, "--target", target, "--wheels-dir", v.Wheels, "--skip-models"}
		return testsupport.Run(t, v.Dir, v.Env(cache), append(args, extra...)...)
	}
	if res := realize(); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	l, err := versions.ReadLock(versions.LockPath(cache, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Python.Packages) != 0 || l.Python.Inputs == "" {
		t.Fatalf("want an empty, resolved set: %d packages, inputs %q", len(l.Python.Packages), l.Python.Inputs)
	}
	inode := func() uint64 {
		fi, err := os.Stat(filepath.Join(target, ".venv"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	made := inode()
	for i := 0; i < 2; i++ {
		start := time.Now()
		res := realize("--locked")
		t.Logf("realize --locked %d: %v (process included)", i+1, time.Since(start))
		if res.Code != 0 {
			t.Fatalf("realize --locked: %s", res.Stderr)
		}
		if strings.Contains(res.Stderr, "resolver run") || strings.Contains(res.Stderr, "-m venv") || inode() != made {
			t.Fatalf("realize --locked %d made the venv again:\n%s", i+1, res.Stderr)
		}
		if !strings.Contains(res.Stdout+res.Stderr, "unchanged") {
			t.Errorf("the venv is not reported unchanged:\n%s%s", res.Stdout, res.Stderr)
		}
	}
}

// The build side of an empty set: the dry run after a build plans the venv
// as the build does (reused), and a rebuild reuses it.
func TestEmptyPythonSetVenvIsPlannedAsReused(t *testing.T) {
	v := withoutRequirements(t)
	base := testsupport.SyntheticBase(t)
	reg := testsupport.NewRegistry(t)
	cache := filepath.Join(v.Dir, "cache")
	args := []string{"build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels, "--push", reg.Host + "/comfy/demo:v1"}
	if res := testsupport.Run(t, v.Dir, v.Env(cache), args...); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	plan := testsupport.Run(t, v.Dir, v.Env(cache), append(args, "--dry-run", "--locked")...)
	if plan.Code != 0 {
		t.Fatal(plan.Stderr)
	}
	venv := ""
	for _, line := range strings.Split(plan.Stdout, "\n") {
		if strings.Contains(line, " venv ") {
			venv = line
		}
	}
	if f := strings.Fields(venv); len(f) == 0 || !strings.HasPrefix(f[0], "reuse") {
		t.Errorf("the dry run plans the empty venv as %q, want reused:\n%s", venv, plan.Stdout)
	}
	res := testsupport.Run(t, v.Dir, v.Env(cache), append(args, "--locked")...)
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if strings.Contains(res.Stderr, "pip") || regexpVenvPacked.MatchString(res.Stdout+res.Stderr) {
		t.Errorf("the rebuild resolved or packed the empty venv again:\n%s\n%s", res.Stdout, res.Stderr)
	}
}

// regexpVenvPacked finds the venv's row of a build's table when it was
// packed ("  5  venv  3 packages ...  1.3 KiB  sha256:0123abcd  packed").
var regexpVenvPacked = regexp.MustCompile(`(?m)^\s*\d+\s+venv\s.*sha256:[0-9a-f]+\s+packed\s*$`)
