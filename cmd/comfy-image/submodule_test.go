package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// Issue 11: a node whose submodule points at the machine's files (file://
// under an http remote) is bad input: exit 2, naming the node, the path
// and the URL.
func TestRefusedSubmoduleExitsTwo(t *testing.T) {
	p := newProject(t)
	local := testsupport.NewRepo(t, filepath.Join(testsupport.TempDir(t), "private"))
	local.Commit("secret", map[string]string{"secret.txt": "host secret\n"})
	evil := p.srv.NewRepo(t, "org/evil")
	evil.Commit("node", map[string]string{"__init__.py": "\n"})
	evil.SubmoduleAdd(local.FileURL(), "repositories/lib")
	evil.Commit("file submodule", nil)
	p.writeSpec(t, `, {"repo": "`+p.srv.RepoURL("org/evil")+`", "name": "evil"}`)
	res := p.run(t, "lock", "--version-id", "demo")
	if res.Code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", res.Code, res.Stderr)
	}
	for _, want := range []string{"custom_nodes[2] (evil)", "repositories/lib", local.FileURL()} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr does not name %q:\n%s", want, res.Stderr)
		}
	}
}

// Issue 11 acceptance: `realize` lays a node with submodules nested two
// deep (relative URLs), LFS pointers, eol rules, symlinks, executables and
// odd names out exactly as `git clone --recurse-submodules` does (umask
// 022), and a second run changes nothing.
func TestRealizedNodeEqualsGitCloneRecurseSubmodules(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	s := newSite(t)
	repos := testsupport.NewNestedRepos(t, filepath.Join(s.dir, "nested"))
	s.writeSpec(t, `, {"repo": "`+repos.Node.FileURL()+`", "name": "nested"}`, "")
	target := filepath.Join(s.dir, "target")
	for run := 1; run <= 2; run++ {
		if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
			t.Fatalf("realize %d: exit %d\n%s", run, res.Code, res.Stderr)
		}
	}
	ref := filepath.Join(testsupport.TempDir(t), "clone")
	testsupport.CloneRecursive(t, repos.Node.FileURL(), ref, true)
	want, got := testsupport.TreeOf(t, ref), testsupport.TreeOf(t, filepath.Join(target, "custom_nodes", "nested"))
	if _, ok := want["repositories/lib1/deep/lib2/leaf.py"]; !ok {
		t.Fatal("the reference clone lacks the nested submodule")
	}
	if d := testsupport.DiffTrees(want, got); d != "" {
		t.Fatalf("realized node differs from git clone --recurse-submodules:\n%s", d)
	}
	subs := s.lock(t).CustomNodes[2].Submodules
	if len(subs) != 2 || subs[0].Path != "repositories/lib1" || subs[1].Path != "repositories/lib1/deep/lib2" ||
		subs[1].URL != "file://"+filepath.Join(repos.Dir, "lib2") || subs[1].Commit != repos.Lib2.RevParse("HEAD") {
		t.Fatalf("locked submodules %+v", subs)
	}
}
