package checkout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/versions"
)

func withUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// checkoutNode resolves the node's default branch in a fresh cache and
// checks it out into dir with the options realize uses.
func checkoutNode(t *testing.T, repoURL, dir string, submodules bool) *Checkout {
	t.Helper()
	ctx := context.Background()
	cache := NewGitCache(testsupport.TempDir(t), false, nil)
	res, err := cache.Resolve(ctx, repoURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenMirror(ctx, cache, repoURL, res.Commit)
	if err != nil {
		t.Fatal(err)
	}
	co, err := CheckoutTree(r, res.Commit, dir, nil, false, TreeOptions(ctx, cache, repoURL, versions.Node{Submodules: &submodules})...)
	if err != nil {
		t.Fatal(err)
	}
	return co
}

// Issue 11: a node with submodules nested two deep (relative URLs),
// symlinks, executables and odd names is checked out as
// `git clone --recurse-submodules` leaves it, byte for byte and mode for mode.
func TestCheckoutEqualsGitCloneRecurseSubmodules(t *testing.T) {
	withUmask(t, 0o022)
	repos := testsupport.NewNestedRepos(t, filepath.Join(testsupport.TempDir(t), "repos"))
	want := filepath.Join(testsupport.TempDir(t), "git")
	testsupport.CloneRecursive(t, repos.Node.FileURL(), want, true)
	got := filepath.Join(testsupport.TempDir(t), "ours")
	co := checkoutNode(t, repos.Node.FileURL(), got, true)

	wantTree := testsupport.TreeOf(t, want)
	if _, ok := wantTree["repositories/lib1/deep/lib2/leaf.py"]; !ok {
		t.Fatalf("the reference clone lacks the nested submodule: %v", wantTree)
	}
	if d := testsupport.DiffTrees(wantTree, testsupport.TreeOf(t, got)); d != "" {
		t.Fatalf("checkout differs from git clone --recurse-submodules:\n%s", d)
	}
	// A second run over it changes nothing and is recognised as done.
	again, err := CheckoutTree(nil, co.Commit, got, co, false, WithSubmodules(repos.Node.FileURL(), nil))
	if err != nil || again != co {
		t.Fatalf("rerun: %v (same record: %v)", err, again == co)
	}
}

// Without submodules the folder is left empty, as git clone without
// --recurse-submodules does.
func TestCheckoutWithoutSubmodulesEqualsPlainClone(t *testing.T) {
	withUmask(t, 0o022)
	repos := testsupport.NewNestedRepos(t, filepath.Join(testsupport.TempDir(t), "repos"))
	want := filepath.Join(testsupport.TempDir(t), "git")
	testsupport.CloneRecursive(t, repos.Node.FileURL(), want, false)
	got := filepath.Join(testsupport.TempDir(t), "ours")
	checkoutNode(t, repos.Node.FileURL(), got, false)
	wantTree := testsupport.TreeOf(t, want)
	if wantTree["repositories/lib1"] != "dir -rwxr-xr-x" {
		t.Fatalf("git left %q for the submodule folder", wantTree["repositories/lib1"])
	}
	if d := testsupport.DiffTrees(wantTree, testsupport.TreeOf(t, got)); d != "" {
		t.Fatalf("checkout differs from git clone:\n%s", d)
	}
}

func TestSubmoduleURL(t *testing.T) {
	for _, c := range []struct{ parent, sub, want, err string }{
		{"https://github.com/org/node", "../lib", "https://github.com/org/lib", ""},
		{"https://github.com/org/node.git", "../lib.git", "https://github.com/org/lib.git", ""},
		{"https://github.com/org/node.git/", "./sub", "https://github.com/org/node.git/sub", ""},
		{"https://x-access-token:tok@github.com/org/node", "../../other/lib", "https://x-access-token:tok@github.com/other/lib", ""},
		{"https://x-access-token:${GH_TOKEN}@github.com/org/node", "../lib", "https://x-access-token:${GH_TOKEN}@github.com/org/lib", ""},
		{"file:///srv/git/node", "../lib", "file:///srv/git/lib", ""},
		{"https://github.com/org/node", "https://gitlab.com/a/b", "https://gitlab.com/a/b", ""},
		{"https://github.com/org/node", "git@github.com:a/b.git", "git@github.com:a/b.git", ""},
		{"https://github.com/org/node", "../../../../etc", "", "climbs above"},
		{"https://github.com/org/node", "file:///etc/secrets", "", "file:// submodule"},
		{"https://github.com/org/node", "ext::sh -c touch% /tmp/pwned", "", "expected a git URL"},
		{"https://github.com/org/node", "/srv/git/lib", "", "expected a git URL"},
		{"https://github.com/org/node", "https://host/a/../../b", "", "'..'"},
	} {
		got, err := SubmoduleURL(c.parent, c.sub)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("SubmoduleURL(%q, %q) = %q, %v; want an error with %q", c.parent, c.sub, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("SubmoduleURL(%q, %q) = %q, %v; want %q", c.parent, c.sub, got, err, c.want)
		}
	}
}

func parseSpec(t *testing.T, text string) *versions.Spec {
	t.Helper()
	s, err := versions.Parse("demo.json", []byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A remote node cannot make us read the machine's repositories through a
// file:// submodule; a .gitmodules path that does not match its gitlink
// is refused too. Both are bad input, and nothing is written.
func TestSubmoduleURLsAreUntrusted(t *testing.T) {
	srv := testsupport.NewGitServer(t)
	local := testsupport.NewRepo(t, filepath.Join(testsupport.TempDir(t), "private"))
	local.Commit("secret", map[string]string{"secret.txt": "host secret\n"})
	node := srv.NewRepo(t, "org/evil")
	node.Commit("node", map[string]string{"__init__.py": "\n"})
	node.SubmoduleAdd(local.FileURL(), "lib")
	node.Commit("file submodule", nil)
	dir := filepath.Join(testsupport.TempDir(t), "node")
	ctx := context.Background()
	cache := NewGitCache(testsupport.TempDir(t), false, nil)
	url := srv.RepoURL("org/evil")
	res, err := cache.Resolve(ctx, url, "", "")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cache.Open(url)
	_, err = CheckoutTree(r, res.Commit, dir, nil, false, TreeOptions(ctx, cache, url, versions.Node{})...)
	var se *SubmoduleError
	if !errors.As(err, &se) || !se.BadInput() || !strings.Contains(err.Error(), "file:// submodule") {
		t.Fatalf("got %v, want a refused file:// submodule (bad input)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "lib", "secret.txt")); err == nil {
		t.Fatal("the host's repository was checked out into the node")
	}
	if _, err := os.Stat(filepath.Join(cache.Dir, "file")); err == nil {
		t.Fatal("the host's repository was mirrored into the cache")
	}
}
