package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/versions"
)

// project is a served core and two node repositories plus a spec naming
// them, the way a user's versions/ folder would.
type project struct {
	srv               *testsupport.GitServer
	core, gguf, extra *testsupport.Repo
	dir, cache        string
}

func newProject(t *testing.T) *project {
	p := &project{srv: testsupport.NewGitServer(t), dir: testsupport.TempDir(t)}
	p.cache = filepath.Join(p.dir, "cache")
	p.core = p.srv.NewRepo(t, "comfyanonymous/ComfyUI")
	p.core.Commit("core", map[string]string{"main.py": "print('comfy')", "requirements.txt": "\n"})
	p.core.Git("branch", "master")
	p.gguf = p.srv.NewRepo(t, "city96/ComfyUI-GGUF")
	p.gguf.Commit("gguf", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}"})
	p.gguf.Git("tag", "-a", "v0.1", "-m", "v0.1")
	p.gguf.Commit("gguf 2", map[string]string{"nodes.py": "x = 2"})
	p.extra = p.srv.NewRepo(t, "kijai/ComfyUI-KJNodes")
	p.extra.Commit("kj", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}"})
	p.writeSpec(t, "")
	return p
}

// writeSpec writes versions/demo.json with extra node entries.
func (p *project) writeSpec(t *testing.T, extraNodes string) { p.writeSpecWith(t, extraNodes, "") }

// writeSpecWith writes versions/demo.json with extra node entries and extra
// top-level fields (models, env, python, options).
func (p *project) writeSpecWith(t *testing.T, extraNodes, extraFields string) {
	spec := fmt.Sprintf(`{
  "schema_version": 2,
  "version_id": "demo",
  "comfy": {"repo": %q, "ref": "master"},
  %s
  "custom_nodes": [
    {"repo": %q, "name": "gguf", "ref": "v0.1"},
    {"repo": %q}%s
  ]
}`, p.srv.RepoURL("comfyanonymous/ComfyUI"), extraFields, p.srv.RepoURL("city96/ComfyUI-GGUF"), p.srv.RepoURL("kijai/ComfyUI-KJNodes.git"), extraNodes)
	os.MkdirAll(filepath.Join(p.dir, "versions"), 0o755)
	if err := os.WriteFile(filepath.Join(p.dir, "versions", "demo.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (p *project) run(t *testing.T, args ...string) testsupport.Result {
	t.Helper()
	return testsupport.Run(t, p.dir, []string{"COMFY_CACHE=" + p.cache}, args...)
}

func (p *project) lock(t *testing.T) *versions.Lock {
	t.Helper()
	l, err := versions.ReadLock(versions.LockPath(p.cache, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLockCommitsEqualRevParse(t *testing.T) {
	p := newProject(t)
	res := p.run(t, "lock", "--version-id", "demo")
	if res.Code != 0 {
		t.Fatalf("lock exit %d\n%s", res.Code, res.Stderr)
	}
	l := p.lock(t)
	if l.Comfy.Commit != p.core.RevParse("master") {
		t.Errorf("core %s, want %s", l.Comfy.Commit, p.core.RevParse("master"))
	}
	if got, want := l.CustomNodes[0].Commit, p.gguf.RevParse("v0.1"); got != want {
		t.Errorf("gguf (annotated tag v0.1) %s, want %s", got, want)
	}
	if got, want := l.CustomNodes[1].Commit, p.extra.RevParse("HEAD"); got != want {
		t.Errorf("default branch of KJNodes %s, want %s", got, want)
	}
	if l.CustomNodes[1].Name != "ComfyUI-KJNodes" {
		t.Errorf("default node name %q", l.CustomNodes[1].Name)
	}
	if !strings.Contains(res.Stdout, l.Comfy.Commit) {
		t.Errorf("output does not show the core commit:\n%s", res.Stdout)
	}
}

func TestLockSeesMovedBranch(t *testing.T) {
	p := newProject(t)
	if res := p.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	first := p.lock(t).Comfy.Commit
	p.core.Git("checkout", "-q", "master")
	moved := p.core.Commit("fix", map[string]string{"fix.py": "1"})
	if res := p.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if got := p.lock(t).Comfy.Commit; got != moved || got == first {
		t.Fatalf("after master moved: lock has %s, want %s (was %s)", got, moved, first)
	}
}

func TestTwoLockProcessesShareOneCache(t *testing.T) {
	p := newProject(t)
	var wg sync.WaitGroup
	results := make([]testsupport.Result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = p.run(t, "lock", "--version-id", "demo")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 {
			t.Fatalf("process %d exit %d:\n%s", i, r.Code, r.Stderr)
		}
	}
	mirrors, _ := filepath.Glob(filepath.Join(p.cache, "git", "*", "*", "*.git"))
	if len(mirrors) != 3 {
		t.Fatalf("mirrors %v, want 3", mirrors)
	}
	for _, m := range mirrors {
		if out, err := exec.Command("git", "-C", m, "fsck", "--full", "--strict").CombinedOutput(); err != nil {
			t.Fatalf("git fsck %s: %v\n%s", m, err, out)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(p.cache, "git", "*", "*", "*.tmp-*")); len(tmp) != 0 {
		t.Fatalf("temporary mirrors left: %v", tmp)
	}
	if p.lock(t).Comfy.Commit != p.core.RevParse("master") {
		t.Fatal("lock written by concurrent processes is wrong")
	}
}

func TestOfflineAfterOnlineLock(t *testing.T) {
	p := newProject(t)
	if res := p.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	online := p.lock(t)
	os.Remove(versions.LockPath(p.cache, "demo"))
	p.srv.Close()
	res := p.run(t, "lock", "--version-id", "demo", "--offline")
	if res.Code != 0 {
		t.Fatalf("offline lock exit %d:\n%s", res.Code, res.Stderr)
	}
	offline := p.lock(t)
	a, _ := json.Marshal(online)
	b, _ := json.Marshal(offline)
	if string(a) != string(b) {
		t.Fatalf("offline lock differs:\n%s\n%s", a, b)
	}
}

func TestOfflineWithoutMirrorNamesRepoAndRef(t *testing.T) {
	p := newProject(t)
	res := p.run(t, "lock", "--version-id", "demo", "--offline")
	if res.Code != 1 {
		t.Fatalf("exit %d, want 1", res.Code)
	}
	for _, want := range []string{p.srv.RepoURL("comfyanonymous/ComfyUI"), "no mirror in the cache", "custom_nodes[0] (gguf)"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.Stderr)
		}
	}
}

func TestMissingRefFailsNamingIt(t *testing.T) {
	p := newProject(t)
	p.writeSpec(t, fmt.Sprintf(`, {"repo": %q, "name": "pinned", "ref": "no-such-branch"}`, p.srv.RepoURL("kijai/ComfyUI-KJNodes")))
	res := p.run(t, "lock", "--version-id", "demo")
	if res.Code != 1 || !strings.Contains(res.Stderr, "custom_nodes[2] (pinned)") || !strings.Contains(res.Stderr, "ref no-such-branch") {
		t.Fatalf("exit %d:\n%s", res.Code, res.Stderr)
	}
	if _, err := os.Stat(versions.LockPath(p.cache, "demo")); !os.IsNotExist(err) {
		t.Fatal("a failed lock wrote a lock file")
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	p := newProject(t)
	before := p.srv.Requests()
	res := p.run(t, "lock", "--version-id", "demo", "--dry-run")
	if res.Code != 0 {
		t.Fatalf("exit %d:\n%s", res.Code, res.Stderr)
	}
	if _, err := os.Stat(p.cache); !os.IsNotExist(err) {
		t.Fatalf("--dry-run created the cache: %v", err)
	}
	if p.srv.Requests() != before {
		t.Fatal("--dry-run contacted the git server")
	}
	for _, want := range []string{"would clone", p.srv.RepoURL("city96/ComfyUI-GGUF"), "resolve v0.1", "would write"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, res.Stdout)
		}
	}
}

func TestLockedFlag(t *testing.T) {
	p := newProject(t)
	res := p.run(t, "lock", "--version-id", "demo", "--locked")
	if res.Code != 1 || !strings.Contains(res.Stderr, "no lock") {
		t.Fatalf("--locked without a lock: exit %d\n%s", res.Code, res.Stderr)
	}
	if res := p.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if res := p.run(t, "lock", "--version-id", "demo", "--locked"); res.Code != 0 {
		t.Fatalf("--locked with a current lock: %s", res.Stderr)
	}
	p.writeSpec(t, fmt.Sprintf(`, {"repo": %q, "name": "more"}`, p.srv.RepoURL("kijai/ComfyUI-KJNodes")))
	res = p.run(t, "lock", "--version-id", "demo", "--locked")
	if res.Code != 1 || !strings.Contains(res.Stderr, "custom_nodes[2] (more): not in the lock") {
		t.Fatalf("--locked with a changed spec: exit %d\n%s", res.Code, res.Stderr)
	}
}

func TestBadSpecExitsTwoWithPath(t *testing.T) {
	dir := testsupport.TempDir(t)
	cases := map[string]struct{ spec, want string }{
		"unknown key":   {`{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"nodes":[]}`, "nodes: unknown key"},
		"node slash":    {`{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"custom_nodes":[{"repo":"https://h/a"},{"repo":"https://h/b"},{"repo":"https://h/c","name":"x/y"}]}`, "custom_nodes[2].name"},
		"schema 1":      {`{"schema_version":1,"version_id":"x","comfy":{"repo":"https://h/r"}}`, "schema_version: expected 2"},
		"model escapes": {`{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"models":[{"source":"https://h/m.bin","target_subdir":"../up"}]}`, "models[0].target_subdir"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
			os.WriteFile(file, []byte(tc.spec), 0o644)
			for _, cmd := range []string{"lock", "realize", "build"} {
				res := testsupport.Run(t, dir, []string{"COMFY_CACHE=" + filepath.Join(dir, "cache")}, cmd, "--spec", file)
				if res.Code != 2 {
					t.Fatalf("%s: exit %d, want 2\n%s", cmd, res.Code, res.Stderr)
				}
				if !strings.Contains(res.Stderr, file) || !strings.Contains(res.Stderr, tc.want) {
					t.Fatalf("%s: stderr lacks the file or %q:\n%s", cmd, tc.want, res.Stderr)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "cache")); !os.IsNotExist(err) {
		t.Fatal("a bad spec created the cache")
	}
}

func TestBadUsageExitsTwo(t *testing.T) {
	dir := testsupport.TempDir(t)
	for _, args := range [][]string{
		{"lock"},
		{"lock", "--version-id", "nope"},
		{"lock", "--version-id", "a", "--spec", "b"},
		{"lock", "--no-such-flag"},
	} {
		if res := testsupport.Run(t, dir, nil, args...); res.Code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, res.Code, res.Stderr)
		}
	}
}

func TestMissingEnvIsAWarning(t *testing.T) {
	p := newProject(t)
	spec, _ := os.ReadFile(filepath.Join(p.dir, "versions", "demo.json"))
	withEnv := strings.Replace(string(spec), `"custom_nodes"`, `"env": {"HF_TOKEN": "${COMFY_TEST_UNSET_TOKEN}"}, "custom_nodes"`, 1)
	os.WriteFile(filepath.Join(p.dir, "versions", "demo.json"), []byte(withEnv), 0o644)
	res := p.run(t, "lock", "--version-id", "demo")
	if res.Code != 0 || !strings.Contains(res.Stderr, "warning:") || !strings.Contains(res.Stderr, "COMFY_TEST_UNSET_TOKEN") {
		t.Fatalf("exit %d:\n%s", res.Code, res.Stderr)
	}
}
