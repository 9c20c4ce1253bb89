package checkout

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

func TestCheckoutTreeKeepsModesLinksAndUserFiles(t *testing.T) {
	src := testsupport.NewRepo(t, filepath.Join(testsupport.TempDir(t), "src"))
	src.Commit("one", map[string]string{"a.py": "a = 1\n", "bin/run.sh": "#!/bin/sh\necho run\n", "old.py": "old\n"})
	os.Chmod(filepath.Join(src.Dir, "bin", "run.sh"), 0o755)
	os.Symlink("a.py", filepath.Join(src.Dir, "link.py"))
	src.Git("add", "-A")
	src.Git("commit", "-q", "--amend", "--no-edit")
	first := src.RevParse("HEAD")
	r, err := git.PlainOpen(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testsupport.TempDir(t), "node")
	c1, err := CheckoutTree(r, first, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "bin", "run.sh")); fi.Mode().Perm()&0o111 == 0 {
		t.Error("executable bit lost")
	}
	if l, _ := os.Readlink(filepath.Join(dir, "link.py")); l != "a.py" {
		t.Errorf("symlink %q", l)
	}
	// The user adds a file; the next commit drops old.py and changes a.py.
	os.WriteFile(filepath.Join(dir, "mine.txt"), []byte("mine"), 0o644)
	second := src.Commit("two", map[string]string{"a.py": "a = 2\n", "old.py": ""})
	c2, err := CheckoutTree(r, second, dir, c1, false)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "a.py")); string(data) != "a = 2\n" {
		t.Error("a.py not updated")
	}
	if _, err := os.Stat(filepath.Join(dir, "old.py")); !os.IsNotExist(err) {
		t.Error("a file the commit dropped is still there")
	}
	if _, err := os.Stat(filepath.Join(dir, "mine.txt")); err != nil {
		t.Error("the user's file was removed")
	}
	// An edit to a tracked file stops the next checkout, naming the file.
	os.WriteFile(filepath.Join(dir, "a.py"), []byte("a = 'edited'\n"), 0o644)
	third := src.Commit("three", map[string]string{"b.py": "b\n"})
	_, err = CheckoutTree(r, third, dir, c2, false)
	var mod *ModifiedError
	if !errors.As(err, &mod) || len(mod.Files) != 1 || mod.Files[0] != "a.py" {
		t.Fatalf("error %v", err)
	}
	if _, err := CheckoutTree(r, third, dir, c2, true); err != nil {
		t.Fatalf("--force: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "a.py")); string(data) != "a = 2\n" {
		t.Error("--force did not restore a.py")
	}
}
