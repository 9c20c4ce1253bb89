package checkout

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// hostDir is a folder outside the checkout standing for "/outside": it
// holds a file a careless checkout would overwrite or delete.
func hostDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(testsupport.TempDir(t), "outside")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "y"), []byte("host file y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dirState lists every path under dir with its type, mode and content.
func dirState(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			if !os.IsNotExist(err) {
				t.Fatal(err)
			}
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "link " + l
		case fi.IsDir():
			out[rel] = "dir " + fi.Mode().Perm().String()
		default:
			data, _ := os.ReadFile(p)
			out[rel] = fmt.Sprintf("%v %q", fi.Mode().Perm(), data)
		}
		return nil
	})
	return out
}

func assertUntouched(t testing.TB, dir string, before map[string]string) {
	t.Helper()
	if got := dirState(t, dir); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("%s changed:\nbefore %v\nafter  %v", dir, before, got)
	}
}

// linkRepo is a real repository whose commits the test makes with git.
func linkRepo(t *testing.T) (*testsupport.Repo, *git.Repository) {
	t.Helper()
	src := testsupport.NewRepo(t, filepath.Join(testsupport.TempDir(t), "src"))
	r, err := git.PlainOpen(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return src, r
}

// commitLink commits a symlink at rel (replacing what is there).
func commitLink(t *testing.T, src *testsupport.Repo, rel, target string) string {
	t.Helper()
	full := filepath.Join(src.Dir, rel)
	os.RemoveAll(full)
	if err := os.Symlink(target, full); err != nil {
		t.Fatal(err)
	}
	return src.Commit("link "+rel, nil)
}

func TestCheckoutLinkReplacedByFolderWritesInside(t *testing.T) {
	t.Run("empty outside folder", func(t *testing.T) {
		outside := filepath.Join(testsupport.TempDir(t), "outside")
		os.MkdirAll(outside, 0o755)
		checkoutLinkThenFolder(t, outside)
	})
	t.Run("outside folder with the file", func(t *testing.T) { checkoutLinkThenFolder(t, hostDir(t)) })
}

func checkoutLinkThenFolder(t *testing.T, outside string) {
	before := dirState(t, outside)
	src, r := linkRepo(t)
	src.Commit("base", map[string]string{"a.py": "a\n"})
	c1 := commitLink(t, src, "sub", outside)
	os.Remove(filepath.Join(src.Dir, "sub"))
	c2 := src.Commit("folder", map[string]string{"sub/x": "from the node\n"})

	dir := filepath.Join(testsupport.TempDir(t), "node")
	st1, err := CheckoutTree(r, c1, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "sub")); err != nil || l != outside {
		t.Fatalf("c1's link was not created as a link: %q %v", l, err)
	}
	if _, err := CheckoutTree(r, c2, dir, st1, false); err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, outside, before)
	if fi, err := os.Lstat(filepath.Join(dir, "sub")); err != nil || !fi.IsDir() {
		t.Fatalf("sub is not a real folder after c2: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "sub", "x")); string(data) != "from the node\n" {
		t.Fatalf("sub/x = %q", data)
	}
}

func TestCheckoutFolderReplacedByLinkDeletesNothingOutside(t *testing.T) {
	outside := hostDir(t)
	before := dirState(t, outside)
	src, r := linkRepo(t)
	c1 := src.Commit("folder", map[string]string{"a.py": "a\n", "sub/x": "x\n", "sub/y": "y\n"})
	c2 := commitLink(t, src, "sub", outside)

	dir := filepath.Join(testsupport.TempDir(t), "node")
	st1, err := CheckoutTree(r, c1, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := CheckoutTree(r, c2, dir, st1, false)
	if err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, outside, before)
	if l, _ := os.Readlink(filepath.Join(dir, "sub")); l != outside {
		t.Fatalf("sub is not the commit's link: %q", l)
	}
	// Back to the folder, and a no-op rerun: still nothing outside changes.
	st3, err := CheckoutTree(r, c1, dir, st2, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckoutTree(r, c1, dir, st3, false); err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, outside, before)
	if data, _ := os.ReadFile(filepath.Join(dir, "sub", "y")); string(data) != "y\n" {
		t.Fatalf("sub/y = %q", data)
	}
}

func TestCheckoutNeverDeletesUserFilesForATypeChange(t *testing.T) {
	outside := hostDir(t)
	before := dirState(t, outside)
	src, r := linkRepo(t)
	c1 := src.Commit("folder", map[string]string{"a.py": "a\n", "sub/x": "x\n"})
	c2 := commitLink(t, src, "sub", outside)

	dir := filepath.Join(testsupport.TempDir(t), "node")
	st1, err := CheckoutTree(r, c1, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "sub", "mine.txt")
	os.WriteFile(mine, []byte("the user's\n"), 0o644)
	for _, force := range []bool{false, true} {
		_, err := CheckoutTree(r, c2, dir, st1, force)
		if err == nil || !strings.Contains(err.Error(), "sub/mine.txt") {
			t.Fatalf("force=%v: a checkout that deletes a user's file was not refused: %v", force, err)
		}
		if data, _ := os.ReadFile(mine); string(data) != "the user's\n" {
			t.Fatalf("force=%v: the user's file is gone", force)
		}
		if data, _ := os.ReadFile(filepath.Join(dir, "sub", "x")); string(data) != "x\n" {
			t.Fatalf("force=%v: the refused checkout changed sub/x", force)
		}
		assertUntouched(t, outside, before)
	}
}

func TestCheckoutNeverFollowsALinkInsideTheNode(t *testing.T) {
	src, r := linkRepo(t)
	src.Commit("pkg", map[string]string{"pkg/a.py": "a\n"})
	c1 := commitLink(t, src, "lib", "pkg")
	os.Remove(filepath.Join(src.Dir, "lib"))
	c2 := src.Commit("lib folder", map[string]string{"lib/b.py": "b\n"})

	dir := filepath.Join(testsupport.TempDir(t), "node")
	st1, err := CheckoutTree(r, c1, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "lib")); l != "pkg" {
		t.Fatalf("the relative link inside the node is %q, want pkg", l)
	}
	if _, err := CheckoutTree(r, c2, dir, st1, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "pkg", "b.py")); !os.IsNotExist(err) {
		t.Fatal("lib/b.py was written through the old link into pkg/")
	}
	if fi, err := os.Lstat(filepath.Join(dir, "lib")); err != nil || !fi.IsDir() {
		t.Fatal("lib is not a real folder")
	}
}

// A user's link in the way of a folder the commit needs is never followed.
func TestCheckoutRefusesAUserLinkInTheWay(t *testing.T) {
	outside := hostDir(t)
	before := dirState(t, outside)
	src, r := linkRepo(t)
	c1 := src.Commit("one", map[string]string{"a.py": "a\n"})
	c2 := src.Commit("two", map[string]string{"sub/x": "x\n"})
	dir := filepath.Join(testsupport.TempDir(t), "node")
	st1, err := CheckoutTree(r, c1, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	os.Symlink(outside, filepath.Join(dir, "sub"))
	for _, force := range []bool{false, true} {
		if _, err := CheckoutTree(r, c2, dir, st1, force); err == nil || !strings.Contains(err.Error(), "sub") {
			t.Fatalf("force=%v: %v", force, err)
		}
		assertUntouched(t, outside, before)
	}
}

func TestForceNeverOverwritesAFileTheUserAdded(t *testing.T) {
	src, r := linkRepo(t)
	c1 := src.Commit("one", map[string]string{"a.py": "a\n"})
	c2 := src.Commit("two", map[string]string{"new.py": "from the node\n"})
	dir := filepath.Join(testsupport.TempDir(t), "node")
	st1, err := CheckoutTree(r, c1, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "new.py"), []byte("the user's\n"), 0o644)
	for _, force := range []bool{false, true} {
		_, err := CheckoutTree(r, c2, dir, st1, force)
		if err == nil || !strings.Contains(err.Error(), "new.py") {
			t.Fatalf("force=%v: %v", force, err)
		}
		if data, _ := os.ReadFile(filepath.Join(dir, "new.py")); string(data) != "the user's\n" {
			t.Fatalf("force=%v: the user's file was overwritten", force)
		}
	}
}

// A run killed while checking out c2 leaves files of c2 behind: they are
// the tool's, but a file the user put there is not.
func TestInterruptedCheckoutOwnsOnlyItsOwnFiles(t *testing.T) {
	src, r := linkRepo(t)
	c1 := src.Commit("one", map[string]string{"a.py": "a\n"})
	c2 := src.Commit("two", map[string]string{"new.py": "two\n"})
	c3 := src.Commit("three", map[string]string{"new.py": "three\n"})
	dir := filepath.Join(testsupport.TempDir(t), "node")
	st1, err := CheckoutTree(r, c1, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	pending := &Checkout{Commit: st1.Commit, Files: st1.Files, Pending: c2}
	// What the killed run wrote of c2 is replaced by c3's content.
	os.WriteFile(filepath.Join(dir, "new.py"), []byte("two\n"), 0o644)
	if _, err := CheckoutTree(r, c3, dir, pending, false); err != nil {
		t.Fatalf("a file of the interrupted commit was not taken as ours: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "new.py")); string(data) != "three\n" {
		t.Fatalf("new.py = %q", data)
	}
	// A user's file at the same path is not ours, pending or not.
	os.WriteFile(filepath.Join(dir, "new.py"), []byte("the user's\n"), 0o644)
	if _, err := CheckoutTree(r, c2, dir, pending, false); err == nil || !strings.Contains(err.Error(), "new.py") {
		t.Fatalf("interrupted state let a user's file be overwritten: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "new.py")); string(data) != "the user's\n" {
		t.Fatal("the user's file was overwritten")
	}
}

// craft is one entry of a tree made with go-git's object API (git itself
// refuses to make most of these).
type craft struct {
	name    string
	mode    filemode.FileMode
	content string  // blob content (a link's target)
	sub     []craft // entries when mode is filemode.Dir
}

func storeBlob(t testing.TB, r *git.Repository, content string) plumbing.Hash {
	obj := r.Storer.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, _ := obj.Writer()
	w.Write([]byte(content))
	w.Close()
	h, err := r.Storer.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// storeTree writes the entries in the given order, byte for byte as a
// crafted repository would hold them (no sorting, no checks).
func storeTree(t testing.TB, r *git.Repository, entries []craft) plumbing.Hash {
	obj := r.Storer.NewEncodedObject()
	obj.SetType(plumbing.TreeObject)
	w, _ := obj.Writer()
	for _, e := range entries {
		var h plumbing.Hash
		if e.mode == filemode.Dir {
			h = storeTree(t, r, e.sub)
		} else {
			h = storeBlob(t, r, e.content)
		}
		fmt.Fprintf(w, "%o %s\x00", uint32(e.mode), e.name)
		w.Write(h[:])
	}
	w.Close()
	h, err := r.Storer.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func craftCommit(t testing.TB, r *git.Repository, entries []craft) string {
	sig := object.Signature{Name: "t", Email: "t@example.invalid", When: time.Unix(1700000000, 0).UTC()}
	c := &object.Commit{Author: sig, Committer: sig, Message: "crafted\n", TreeHash: storeTree(t, r, entries)}
	obj := r.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		t.Fatal(err)
	}
	h, err := r.Storer.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestCheckoutRefusesCraftedTrees(t *testing.T) {
	outside := hostDir(t)
	rel := func(from string) string { r, _ := filepath.Rel(from, outside); return r }
	file := func(name, content string) craft { return craft{name: name, mode: filemode.Regular, content: content} }
	folder := func(name string, sub ...craft) craft { return craft{name: name, mode: filemode.Dir, sub: sub} }
	link := func(name, target string) craft { return craft{name: name, mode: filemode.Symlink, content: target} }
	cases := []struct {
		name    string
		path    string // the path the error must name
		entries func(dir string) []craft
	}{
		{"a link and a folder of one name", "sub", func(string) []craft {
			return []craft{link("sub", outside), folder("sub", file("x", "evil\n"))}
		}},
		{"a folder and a link of one name", "sub", func(string) []craft {
			return []craft{folder("sub", file("x", "evil\n")), link("sub", outside)}
		}},
		{"two files of one name", "a.py", func(string) []craft {
			return []craft{file("a.py", "one\n"), file("a.py", "two\n")}
		}},
		{"a name holding a slash", "sub/x", func(string) []craft {
			return []craft{link("sub", outside), file("sub/x", "evil\n")}
		}},
		{"a dot-dot folder", "..", func(dir string) []craft {
			return []craft{folder("..", folder(filepath.Base(filepath.Dir(outside)), folder("outside", file("x", "evil\n"))))}
		}},
		{"a dot-dot name after a slash", "a/../../outside", func(dir string) []craft {
			return []craft{file("a/../../outside", "evil\n")}
		}},
		{"a dot folder", ".", func(string) []craft { return []craft{folder(".", file("x", "x\n"))} }},
		{"a .git folder", ".git", func(string) []craft {
			return []craft{folder(".git", file("config", "[core]\n\tfsmonitor = evil\n"))}
		}},
		{"a .GiT folder in a sub folder", "sub/.GiT", func(string) []craft {
			return []craft{folder("sub", folder(".GiT", file("config", "x\n")))}
		}},
		{"an empty name", "", func(string) []craft { return []craft{file("", "x\n")} }},
		{"an empty link", "l", func(string) []craft { return []craft{link("l", "")} }},
		{"a relative link out then a file under it", "up", func(dir string) []craft {
			return []craft{link("up", rel(dir)), folder("up", file("x", "evil\n"))}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := dirState(t, outside)
			repoDir := testsupport.TempDir(t)
			r, err := git.PlainInit(repoDir, true)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(testsupport.TempDir(t), "target", "node")
			commit := craftCommit(t, r, tc.entries(dir))
			_, err = CheckoutTree(r, commit, dir, nil, false)
			if err == nil {
				t.Fatal("the crafted tree was checked out")
			}
			for _, want := range []string{commit[:12], fmt.Sprintf("%q", tc.path)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			assertUntouched(t, outside, before)
			if got := dirState(t, filepath.Dir(dir)); len(got) > 1 {
				t.Errorf("the refused checkout wrote %v", got)
			}
			if _, err := CommitFiles(r, commit); err == nil {
				t.Error("CommitFiles listed the crafted tree")
			}
		})
	}
}

// A tracked file an interrupted checkout already rewrote is not a user's
// change: the resumed (or redirected) checkout goes on without --force.
func TestInterruptedCheckoutResumesOverItsOwnWrites(t *testing.T) {
	src, r := linkRepo(t)
	c1 := src.Commit("one", map[string]string{"a.py": "a1\n"})
	c2 := src.Commit("two", map[string]string{"a.py": "a2\n"})
	c3 := src.Commit("three", map[string]string{"a.py": "a3\n"})
	dir := filepath.Join(testsupport.TempDir(t), "node")
	st1, err := CheckoutTree(r, c1, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	pending := &Checkout{Commit: st1.Commit, Files: st1.Files, Pending: c2}
	os.WriteFile(filepath.Join(dir, "a.py"), []byte("a2\n"), 0o644) // what the killed run wrote
	for _, commit := range []string{c2, c3} {
		if _, err := CheckoutTree(r, commit, dir, pending, false); err != nil {
			t.Fatalf("resume to %s: %v", commit[:7], err)
		}
		os.WriteFile(filepath.Join(dir, "a.py"), []byte("a2\n"), 0o644)
	}
}
