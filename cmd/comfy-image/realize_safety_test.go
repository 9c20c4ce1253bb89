package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// moveNode commits files to the gguf node, moves its tag and locks again.
func (s *site) moveNode(t *testing.T, files map[string]string) {
	t.Helper()
	s.gguf.Git("checkout", "-q", "main")
	s.gguf.Commit("update", files)
	s.gguf.Git("tag", "-f", "-a", "v0.1", "-m", "moved")
	if res := s.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
}

// Issue 8 point 3: a refused checkout stays refused on a plain rerun, and
// --force never overwrites a file the user added.
func TestConflictRefusalHoldsOnRerun(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	mine := filepath.Join(target, "custom_nodes", "gguf", "new.py")
	os.WriteFile(mine, []byte("# the user's own\n"), 0o644)
	s.moveNode(t, map[string]string{"new.py": "y = 1\n"})
	for i, args := range [][]string{{"--skip-models"}, {"--skip-models"}, {"--skip-models", "--force"}} {
		res := s.realize(t, target, args...)
		if res.Code == 0 || !strings.Contains(res.Stderr, "new.py") {
			t.Fatalf("run %d %v: exit %d, the user's file in the way was not named:\n%s", i+1, args, res.Code, res.Stderr)
		}
		if readFile(t, target, "custom_nodes/gguf/new.py") != "# the user's own\n" {
			t.Fatalf("run %d %v overwrote the user's file", i+1, args)
		}
	}
	// Moved away, the next plain run goes through.
	os.Rename(mine, mine+".bak")
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if readFile(t, target, "custom_nodes/gguf/new.py") != "y = 1\n" || readFile(t, target, "custom_nodes/gguf/new.py.bak") != "# the user's own\n" {
		t.Fatal("the node was not updated beside the user's file")
	}
}

// Issue 8 point 2: a core whose custom_nodes is a link never gets the node
// links put through it.
func TestCoreCustomNodesLinkIsRefused(t *testing.T) {
	s := newSite(t)
	outside := filepath.Join(s.dir, "outside")
	os.MkdirAll(outside, 0o755)
	os.RemoveAll(filepath.Join(s.core.Dir, "custom_nodes"))
	if err := os.Symlink(outside, filepath.Join(s.core.Dir, "custom_nodes")); err != nil {
		t.Fatal(err)
	}
	s.core.Commit("custom_nodes is a link", nil)
	res := s.realize(t, filepath.Join(s.dir, "target"), "--skip-models")
	if res.Code != 2 || !strings.Contains(res.Stderr, "custom_nodes") {
		t.Fatalf("exit %d, want 2 naming ComfyUI/custom_nodes:\n%s", res.Code, res.Stderr)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("realize wrote through the core's custom_nodes link: %v", entries)
	}
}

// Issue 8 point 2: a crafted tree (git refuses to make it) is refused with
// exit 2, naming the node, the commit and the path; nothing lands outside.
func TestCraftedNodeTreeIsRefused(t *testing.T) {
	s := newSite(t)
	outside := filepath.Join(s.dir, "outside")
	os.MkdirAll(outside, 0o755)
	r, err := git.PlainOpen(s.extra.Dir)
	if err != nil {
		t.Fatal(err)
	}
	store := func(typ plumbing.ObjectType, data []byte) plumbing.Hash {
		obj := r.Storer.NewEncodedObject()
		obj.SetType(typ)
		w, _ := obj.Writer()
		w.Write(data)
		w.Close()
		h, err := r.Storer.SetEncodedObject(obj)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	entry := func(mode filemode.FileMode, name string, h plumbing.Hash) []byte {
		return append([]byte(fmt.Sprintf("%o %s\x00", uint32(mode), name)), h[:]...)
	}
	link := store(plumbing.BlobObject, []byte(outside))
	evil := store(plumbing.BlobObject, []byte("evil\n"))
	sub := store(plumbing.TreeObject, entry(filemode.Regular, "x", evil))
	tree := store(plumbing.TreeObject, append(entry(filemode.Symlink, "sub", link), entry(filemode.Dir, "sub", sub)...))
	head, _ := r.Head()
	sig := object.Signature{Name: "t", Email: "t@example.invalid"}
	c := &object.Commit{Author: sig, Committer: sig, Message: "crafted\n", TreeHash: tree, ParentHashes: []plumbing.Hash{head.Hash()}}
	obj := r.Storer.NewEncodedObject()
	c.Encode(obj)
	commit, _ := r.Storer.SetEncodedObject(obj)
	if err := r.Storer.SetReference(plumbing.NewHashReference(head.Name(), commit)); err != nil {
		t.Fatal(err)
	}
	res := s.realize(t, filepath.Join(s.dir, "target"), "--skip-models")
	for _, want := range []string{"ComfyUI-KJNodes", commit.String()[:12], `"sub"`} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("the error does not name %s", want)
		}
	}
	if res.Code != 2 {
		t.Errorf("exit %d, want 2:\n%s", res.Code, res.Stderr)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("the crafted tree wrote outside: %v", entries)
	}
}

// Issue 12: a --target that is a file, or a folder that is not empty and
// was never realized, is refused before any work (exit 2, naming it); with
// --force realize writes beside the user's files and refuses, naming them,
// any it would overwrite.
func TestTargetMustBeEmptyOrRealized(t *testing.T) {
	s := newSite(t)
	file := filepath.Join(s.dir, "a-file")
	os.WriteFile(file, []byte("x"), 0o644)
	if res := s.realize(t, file, "--skip-models"); res.Code != 2 || !strings.Contains(res.Stderr, file) {
		t.Fatalf("a file as --target: exit %d\n%s", res.Code, res.Stderr)
	}

	target := filepath.Join(s.dir, "photos")
	os.MkdirAll(target, 0o755)
	os.WriteFile(filepath.Join(target, "holiday.jpg"), []byte("jpeg"), 0o644)
	before := fmt.Sprint(snapshot(t, target))
	res := s.realize(t, target, "--skip-models")
	if res.Code != 2 || !strings.Contains(res.Stderr, target) || !strings.Contains(res.Stderr, "--force") {
		t.Fatalf("a non-empty folder as --target: exit %d\n%s", res.Code, res.Stderr)
	}
	if fmt.Sprint(snapshot(t, target)) != before {
		t.Fatal("the refused run wrote into the folder")
	}

	// --force with files realize would overwrite: refused, naming them.
	os.WriteFile(filepath.Join(target, "run.sh"), []byte("#!/bin/sh\necho mine\n"), 0o755)
	os.MkdirAll(filepath.Join(target, "ComfyUI"), 0o755)
	os.WriteFile(filepath.Join(target, "ComfyUI", "main.py"), []byte("# mine\n"), 0o644)
	res = s.realize(t, target, "--skip-models", "--force")
	if res.Code == 0 || !strings.Contains(res.Stderr, "run.sh") {
		t.Fatalf("--force over the user's run.sh: exit %d\n%s", res.Code, res.Stderr)
	}
	if readFile(t, target, "run.sh") != "#!/bin/sh\necho mine\n" || readFile(t, target, "ComfyUI/main.py") != "# mine\n" {
		t.Fatal("--force overwrote the user's files")
	}
	os.Remove(filepath.Join(target, "run.sh"))
	res = s.realize(t, target, "--skip-models", "--force")
	if res.Code == 0 || !strings.Contains(res.Stderr, "main.py") {
		t.Fatalf("--force over the user's ComfyUI/main.py: exit %d\n%s", res.Code, res.Stderr)
	}
	if readFile(t, target, "ComfyUI/main.py") != "# mine\n" {
		t.Fatal("--force overwrote the user's ComfyUI/main.py")
	}

	// Beside files it does not touch, --force realizes and keeps them.
	os.RemoveAll(filepath.Join(target, "ComfyUI"))
	os.RemoveAll(filepath.Join(target, ".comfy-image"))
	if res := s.realize(t, target, "--skip-models", "--force"); res.Code != 0 {
		t.Fatalf("--force beside the user's files: %s", res.Stderr)
	}
	if readFile(t, target, "holiday.jpg") != "jpeg" {
		t.Fatal("the user's file was lost")
	}
	// Realized once, the folder is a target: plain reruns work.
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatalf("rerun: %s", res.Stderr)
	}
}
