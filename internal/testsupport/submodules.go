package testsupport

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NestedRepos is a node repository whose submodules are nested two deep,
// made with the real git under one folder, each added by a relative URL as
// `git submodule add ../<name>` does: node -> repositories/lib1 (../lib1)
// -> deep/lib2 (../lib2). Each holds symlinks, an executable and odd file
// names.
type NestedRepos struct {
	Dir              string
	Node, Lib1, Lib2 *Repo
}

// oddFiles are names a checkout must write as git does.
var oddFiles = map[string]string{
	"with space.txt":      "space\n",
	"ünïcödé.py":          "# unicode\n",
	"-leading-dash":       "dash\n",
	"#hash%percent":       "hash\n",
	"quote'\"name":        "quotes\n",
	"deep/dir/nested.txt": "nested\n",
	"crlf.txt":            "line one\r\nline two\r\n",
}

// NewNestedRepos makes the three repositories under dir.
func NewNestedRepos(t testing.TB, dir string) *NestedRepos {
	t.Helper()
	n := &NestedRepos{Dir: dir}
	n.Lib2 = NewRepo(t, filepath.Join(dir, "lib2"))
	n.Lib2.Commit("lib2", withOdd(map[string]string{"leaf.py": "LEAF = 2\n"}))
	n.Lib2.Commit("lib2 attributes", map[string]string{".gitattributes": "*.py eol=crlf\n"})
	n.Lib2.Executable("run.sh", "#!/bin/sh\necho lib2\n")
	n.Lib2.Symlink("leaf-link.py", "leaf.py")
	n.Lib2.Commit("lib2 links", nil)

	n.Lib1 = NewRepo(t, filepath.Join(dir, "lib1"))
	n.Lib1.Commit("lib1", withOdd(map[string]string{"mid.py": "MID = 1\n"}))
	n.Lib1.SubmoduleAdd("../lib2", "deep/lib2")
	n.Lib1.Symlink("to-leaf", "deep/lib2/leaf.py")
	n.Lib1.Commit("lib1 with lib2", nil)

	n.Node = NewRepo(t, filepath.Join(dir, "node"))
	n.Node.Commit("node", withOdd(map[string]string{
		"__init__.py":              "from .repositories.lib1 import mid\n",
		"repositories/__init__.py": "\n",
	}))
	n.Node.SubmoduleAdd("../lib1", "repositories/lib1")
	n.Node.Executable("bin/tool", "#!/bin/sh\necho tool\n")
	n.Node.Symlink("link-dir", "repositories")
	n.Node.Symlink("dangling", "../outside/nothing")
	n.Node.Commit("node with lib1", nil)
	// Blobs first, attributes after: git normalises line endings when a
	// file is added under a text attribute, so CRs stay in these blobs.
	n.Node.Commit("line endings", map[string]string{
		"run.bat":           "@echo off\nrem lf\n",
		"mixed.bat":         "a\nb\r\nc",
		"notes.txt":         "plain\ntext\n",
		"mixed.txt":         "a\nb\r\n",
		"nul.txt":           "bin\x00ary\n",
		"data.bin":          "\x01\x02\n\x03",
		"keep.dat":          "x\ny\n",
		"readme.md":         "# md\n\nbody\n",
		"conf/nested.cfg":   "k=v\nk2=v2\n",
		"conf/other.txt":    "nested\ntxt\n",
		"weights/model.lfs": LFSPointer([]byte("the real weights\n")),
		"weights/fake.lfs":  "not a pointer\n",
	})
	// Only the attribute files are added: a plain `git add -A` would
	// re-hash racily clean files under the new attributes.
	for rel, text := range map[string]string{
		".gitattributes": "*.bat text eol=crlf\n*.txt text=auto eol=crlf\n*.bin binary\n*.dat -text eol=crlf\n" +
			"*.md text\n*.lfs filter=lfs diff=lfs merge=lfs -text\n",
		"conf/.gitattributes": "*.cfg eol=crlf\nother.txt -text\n",
	} {
		if err := os.WriteFile(filepath.Join(n.Node.Dir, filepath.FromSlash(rel)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		n.Node.Git("add", rel)
	}
	n.Node.Git("commit", "-q", "-m", "attributes")
	for rel, want := range map[string]string{"mixed.bat": "a\nb\r\nc", "mixed.txt": "a\nb\r\n", "crlf.txt": "line one\r\nline two\r\n"} {
		if got := n.Node.Git("cat-file", "blob", "HEAD:"+rel); got != strings.TrimSpace(want) {
			t.Fatalf("%s: blob %q, want %q", rel, got, want)
		}
	}
	return n
}

// LFSPointer is the Git LFS pointer file of content.
func LFSPointer(content []byte) string {
	sum := sha256.Sum256(content)
	return fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", hex.EncodeToString(sum[:]), len(content))
}

func withOdd(files map[string]string) map[string]string {
	for k, v := range oddFiles {
		files[k] = v
	}
	return files
}

// Executable writes an executable file (committed by the next Commit).
func (r *Repo) Executable(rel, content string) {
	r.t.Helper()
	full := filepath.Join(r.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o755); err != nil {
		r.t.Fatal(err)
	}
}

// Symlink makes a symlink (committed by the next Commit).
func (r *Repo) Symlink(rel, target string) {
	r.t.Helper()
	full := filepath.Join(r.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		r.t.Fatal(err)
	}
}

// SubmoduleAdd runs `git submodule add url path` (file:// transport
// allowed, as git refuses it by default since 2.38.1).
func (r *Repo) SubmoduleAdd(url, path string) {
	r.t.Helper()
	r.Git("-c", "protocol.file.allow=always", "submodule", "add", "-q", url, path)
}

// CloneRecursive is `git clone --recurse-submodules url dir` with umask
// 022, the reference a checkout is compared with.
func CloneRecursive(t testing.TB, url, dir string, recurse bool) {
	t.Helper()
	args := []string{"-c", "protocol.file.allow=always", "clone", "-q"}
	if recurse {
		args = append(args, "--recurse-submodules")
	}
	cmd := exec.Command("sh", "-c", `umask 022 && exec git "$@"`, "git")
	cmd.Args = append(cmd.Args, append(args, url, dir)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git clone %s: %v\n%s", url, err, out)
	}
}
