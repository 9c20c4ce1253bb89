package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/versions"
)

// addOtherVersion writes versions/other.json: the same core as demo, one
// node and one model that demo does not use.
func (s *site) addOtherVersion(t *testing.T) (model []byte) {
	r := s.srv.NewRepo(t, "someone/ComfyUI-Only-In-Other-With-A-Rather-Long-Node-Name-For-Columns")
	r.Commit("init", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"})
	model = randomBytes(t, 120_000)
	s.hf.Add("Comfy-Org/Other/split/other_lora.safetensors", model)
	spec := fmt.Sprintf(`{"schema_version": 2, "version_id": "other",
  "comfy": {"repo": %q, "ref": "master"},
  "custom_nodes": [{"repo": %q}],
  "models": [{"source": "hf://Comfy-Org/Other/split/other_lora.safetensors", "target_subdir": "loras"}]}`,
		s.srv.RepoURL("comfyanonymous/ComfyUI"), s.srv.RepoURL("someone/ComfyUI-Only-In-Other-With-A-Rather-Long-Node-Name-For-Columns"))
	if err := os.WriteFile(filepath.Join(s.dir, "versions", "other.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return model
}

func TestCacheDuAndPrune(t *testing.T) {
	s := newSite(t)
	s.addOtherVersion(t)
	if res := s.realize(t, filepath.Join(s.dir, "demo")); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	other := []string{"realize", "--version-id", "other", "--target", filepath.Join(s.dir, "other"), "--wheels-dir", s.wheels}
	res := testsupport.Run(t, s.dir, s.env(), other...)
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	// Its summary fits 100 columns despite the long node name, in words.
	if !lineWith(res.Stdout, "Node-Name-For-Columns", "checked out (1 file)") || !lineWith(res.Stdout, "models", "1 file, 117.2 KiB") {
		t.Errorf("realize summary:\n%s", res.Stdout)
	}
	for _, line := range strings.Split(res.Stdout, "\n") {
		if utf8.RuneCountInString(line) > 100 && !strings.Contains(line, s.dir) {
			t.Errorf("realize summary line wider than 100 columns: %q", line)
		}
	}
	otherLock, err := versions.ReadLock(versions.LockPath(s.cache, "other"))
	if err != nil {
		t.Fatal(err)
	}
	otherBlob := filepath.Join(s.cache, "models", "sha256", otherLock.Models[0].SHA256)
	otherMirror := "someone/ComfyUI-Only-In-Other-With-A-Rather-Long-Node-Name-For-Columns.git"

	du := s.cacheCmd(t, "du")
	for _, want := range []string{"mirrors: 4 entries", "models: 3 entries", "loras/other_lora.safetensors", "vae/wan_vae.safetensors", "demo, other", "by version:", "unused: nothing"} {
		if !strings.Contains(du, want) {
			t.Errorf("du lacks %q:\n%s", want, du)
		}
	}
	if !lineWith(du, "Node-Name-For-Columns.git", "other") || !lineWith(du, "unet/wan_unet.gguf", "demo") {
		t.Errorf("du does not name the version using each entry:\n%s", du)
	}

	// The lock of "other" leaves the cache (kept aside by the user).
	keep := filepath.Join(s.dir, "other.lock.json")
	os.Rename(versions.LockPath(s.cache, "other"), keep)
	if du := s.cacheCmd(t, "du"); !lineWith(du, "other_lora.safetensors", "unused") || !lineWith(du, "Node-Name-For-Columns.git", "unused") {
		t.Errorf("du does not show other's model as unused:\n%s", du)
	}
	dry := s.cacheCmd(t, "prune", "--dry-run")
	if !lineWith(dry, "would remove", otherMirror[len(otherMirror)-20:]) || !strings.Contains(dry, "would free") {
		t.Errorf("prune --dry-run does not list other's mirror:\n%s", dry)
	}
	if _, err := os.Stat(otherBlob); err != nil {
		t.Fatal("prune --dry-run removed a model")
	}
	if out := s.cacheCmd(t, "prune", "--keep-lock", keep); !strings.Contains(out, "freed 0 B in 0 entries") {
		t.Errorf("prune --keep-lock removed what the kept lock uses:\n%s", out)
	}
	out := s.cacheCmd(t, "prune")
	if !strings.Contains(out, "removed models") || !strings.Contains(out, "removed mirrors") {
		t.Errorf("prune output:\n%s", out)
	}
	if _, err := os.Stat(otherBlob); !os.IsNotExist(err) {
		t.Error("prune kept the model no lock uses")
	}
	if du := s.cacheCmd(t, "du"); strings.Contains(du, "Node-Name-For-Columns") || !strings.Contains(du, "unused: nothing") {
		t.Errorf("after prune:\n%s", du)
	}
	// Nothing demo needs went: it realizes again without the network.
	if res := s.realize(t, filepath.Join(s.dir, "demo2"), "--offline"); res.Code != 0 {
		t.Fatalf("demo after prune: %s", res.Stderr)
	}
	// A missing --keep-lock is a usage error.
	if res := testsupport.Run(t, s.dir, s.env(), "cache", "prune", "--keep-lock", filepath.Join(s.dir, "nope.json")); res.Code != 2 {
		t.Errorf("missing --keep-lock: exit %d\n%s", res.Code, res.Stderr)
	}
}

func TestPruneWaitsForNoRunningCommand(t *testing.T) {
	s := newSite(t)
	s.hf.Throttle(50_000)
	p := testsupport.Start(t, s.dir, s.env(), "realize", "--version-id", "demo", "--target", filepath.Join(s.dir, "t"), "--wheels-dir", s.wheels)
	for line := range p.Lines {
		if strings.Contains(line, "wan_unet.gguf: started") {
			break
		}
	}
	res := testsupport.Run(t, s.dir, s.env(), "cache", "prune")
	if res.Code != 1 || !strings.Contains(res.Stderr, "in use by a running lock, realize or build") {
		t.Fatalf("prune during a realize: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	// A dry run only reads: it may run beside a build.
	if res := testsupport.Run(t, s.dir, s.env(), "cache", "prune", "--dry-run"); res.Code != 0 {
		t.Errorf("prune --dry-run during a realize: exit %d\n%s", res.Code, res.Stderr)
	}
	s.hf.Throttle(0)
	for range p.Lines {
	}
	if err := p.Cmd.Wait(); err != nil {
		t.Fatalf("the realize beside prune failed: %v", err)
	}
	// Once it ended, prune runs and keeps everything its lock uses.
	if out := s.cacheCmd(t, "prune"); !strings.Contains(out, "freed 0 B in 0 entries") {
		t.Errorf("prune after the realize:\n%s", out)
	}
}

func (s *site) cacheCmd(t *testing.T, args ...string) string {
	t.Helper()
	res := testsupport.Run(t, s.dir, s.env(), append([]string{"cache"}, args...)...)
	if res.Code != 0 {
		t.Fatalf("cache %v: exit %d\n%s", args, res.Code, res.Stderr)
	}
	for _, line := range strings.Split(res.Stdout, "\n") {
		if utf8.RuneCountInString(line) > 100 && !strings.HasPrefix(line, "cache ") {
			t.Errorf("cache %v: line wider than 100 columns: %q", args, line)
		}
	}
	return res.Stdout
}

// lineWith reports whether one line of out holds every part.
func lineWith(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// A `lock` after a build keeps what the build used: even when the lock
// drops the image's Python set (--update python), `cache du` does not call
// the layers just built nor the image's wheels unused, and prune leaves
// them until the next build (review of issue 12).
func TestLockAfterBuildKeepsItsLayersInUse(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := filepath.Join(v.Dir, "cache")
	build := []string{"build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels, "--output", "oci:" + filepath.Join(v.Dir, "oci") + ":demo"}
	if res := testsupport.Run(t, v.Dir, v.Env(cache), build...); res.Code != 0 {
		t.Fatalf("build: %s", res.Stderr)
	}
	if res := testsupport.Run(t, v.Dir, v.Env(cache), "lock", "--spec", v.SpecFile, "--update", "python"); res.Code != 0 {
		t.Fatalf("lock: %s", res.Stderr)
	}
	du := testsupport.Run(t, v.Dir, v.Env(cache), "cache", "du")
	if du.Code != 0 {
		t.Fatalf("du: %s", du.Stderr)
	}
	if !strings.Contains(du.Stdout, "layers: ") || !lineWith(du.Stdout, "beta-1.2-py3-none-any.whl", "demo") || !strings.Contains(du.Stdout, "unused: nothing") {
		t.Errorf("after build then lock, du marks what the build used as unused:\n%s", du.Stdout)
	}
	dry := testsupport.Run(t, v.Dir, v.Env(cache), "cache", "prune", "--dry-run")
	if dry.Code != 0 || !strings.Contains(dry.Stdout, "would free 0 B in 0 entries") {
		t.Errorf("prune would remove what the last build used: exit %d\n%s%s", dry.Code, dry.Stdout, dry.Stderr)
	}
}
