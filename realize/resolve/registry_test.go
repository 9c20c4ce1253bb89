package resolve_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/checkout"
	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

func registrySpec(t *testing.T, nodes string) *versions.Spec {
	t.Helper()
	core := testsupport.NewRepo(t, filepath.Join(testsupport.TempDir(t), "ComfyUI"))
	core.Commit("core", map[string]string{"main.py": "print('comfy')\n"})
	doc := `{"schema_version": 2, "version_id": "reg", "comfy": {"repo": "` + core.FileURL() + `"}, "custom_nodes": [` + nodes + `]}`
	s, err := versions.Parse("reg.json", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRegistryNodeIsCheckedOutLikeAGitNode: a registry node resolves to the
// latest version when none is asked, its zip is pinned by sha256, and the
// commit unpacked from it has the very tree git makes of the same files
// (modes and links included), so checkout and layers treat it as git.
func TestRegistryNodeIsCheckedOutLikeAGitNode(t *testing.T) {
	reg := testsupport.NewComfyRegistry(t)
	t.Setenv("COMFY_REGISTRY_URL", reg.URL)
	reg.Publish(t, "comfyui-foo", "1.0.0", map[string]string{"__init__.py": "old\n"})
	members := []testsupport.ZipMember{
		{Name: "__init__.py", Content: "NODE_CLASS_MAPPINGS = {}\n"},
		{Name: "lib/"},
		{Name: "lib/util.py", Content: "x = 1\n"},
		{Name: "lib/link.py", Link: "util.py"},
		{Name: "bin/tool.sh", Content: "#!/bin/sh\necho tool\n", Mode: 0o755},
		{Name: "requirements.txt", Content: "beta>=1.0\n"},
		{Name: ".git/config", Content: "[core]\n"},
	}
	zipData := reg.PublishZip(t, "comfyui-foo", "1.1.0", testsupport.MakeZip(t, members...))
	sum := sha256.Sum256(zipData)

	s := registrySpec(t, `{"registry": "comfyui-foo"}`)
	cacheDir := testsupport.TempDir(t)
	l, err := resolveIn(s, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	n := l.CustomNodes[0]
	if n.Name != "comfyui-foo" || n.Registry != "comfyui-foo" || n.Version != "1.1.0" || n.SHA256 != hex.EncodeToString(sum[:]) ||
		n.URL != reg.StorageURL+"/comfy-registry/publisher/comfyui-foo/1.1.0/node.zip" || len(n.Commit) != 40 {
		t.Fatalf("locked node %+v", n)
	}

	// The same files committed by git give the same tree.
	ref := testsupport.NewRepo(t, filepath.Join(testsupport.TempDir(t), "ref"))
	ref.Commit("files", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "lib/util.py": "x = 1\n", "bin/tool.sh": "#!/bin/sh\necho tool\n", "requirements.txt": "beta>=1.0\n"})
	os.Symlink("util.py", filepath.Join(ref.Dir, "lib", "link.py"))
	os.Chmod(filepath.Join(ref.Dir, "bin", "tool.sh"), 0o755)
	ref.Git("add", "-A")
	ref.Git("commit", "-q", "-m", "more")
	wantTree := ref.Git("rev-parse", "HEAD^{tree}")

	cache := checkout.NewGitCache(cacheDir, false, nil)
	repo, err := checkout.OpenMirror(context.Background(), cache, checkout.NodeRepo(s.CustomNodes[0], n), n.Commit)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(plumbingHash(n.Commit))
	if err != nil {
		t.Fatal(err)
	}
	if c.TreeHash.String() != wantTree {
		t.Errorf("tree %s, git makes %s of the same files", c.TreeHash, wantTree)
	}
	dir := filepath.Join(testsupport.TempDir(t), "node")
	if _, err := checkout.CheckoutTree(repo, n.Commit, dir, nil, false); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin", "tool.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("tool.sh: %v %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "lib", "link.py")); err != nil || target != "util.py" {
		t.Errorf("link: %q %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
		t.Error("the zip's .git was unpacked")
	}

	// Another cache resolves the pinned version to the same commit.
	s2 := registrySpec(t, `{"registry": "comfyui-foo", "version": "1.1.0", "name": "foo"}`)
	l2, err := resolveIn(s2, testsupport.TempDir(t))
	if err != nil || l2.CustomNodes[0].Commit != n.Commit || l2.CustomNodes[0].Name != "foo" {
		t.Errorf("second resolve: %+v %v", l2, err)
	}

	// A lock whose zip changed on the server is refused when the cache is empty.
	reg.Replace("comfyui-foo", "1.1.0", testsupport.MakeZip(t, testsupport.ZipMember{Name: "__init__.py", Content: "evil\n"}))
	fresh := checkout.NewGitCache(testsupport.TempDir(t), false, nil)
	if _, err := checkout.OpenMirror(context.Background(), fresh, checkout.NodeRepo(s.CustomNodes[0], n), n.Commit); err == nil || !strings.Contains(err.Error(), "the lock pins "+n.SHA256) {
		t.Errorf("changed zip: %v", err)
	}
}

func TestRegistryErrorsNameTheNodeAndVersion(t *testing.T) {
	reg := testsupport.NewComfyRegistry(t)
	t.Setenv("COMFY_REGISTRY_URL", reg.URL)
	reg.Publish(t, "comfyui-foo", "1.0.0", map[string]string{"__init__.py": "x\n"})
	reg.Publish(t, "comfyui-foo", "1.1.0", map[string]string{"__init__.py": "y\n"})
	reg.Deprecate("comfyui-foo", "1.0.0")
	for nodes, want := range map[string]string{
		`{"registry": "comfyui-nope"}`:                     "custom_nodes[0] (comfyui-nope): registry node comfyui-nope (latest): unknown node id comfyui-nope",
		`{"registry": "comfyui-nope", "version": "1.0.0"}`: "registry node comfyui-nope@1.0.0: unknown node id comfyui-nope",
		`{"registry": "comfyui-foo", "version": "9.9.9"}`:  "registry node comfyui-foo@9.9.9: the registry has no version 9.9.9 of node comfyui-foo",
	} {
		_, err := resolveIn(registrySpec(t, nodes), testsupport.TempDir(t))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", nodes, err, want)
		}
	}
	var log bytes.Buffer
	l, err := resolveIn(registrySpec(t, `{"registry": "comfyui-foo", "version": "1.0.0"}`), testsupport.TempDir(t), resolve.WithLog(&log))
	if err != nil || l.CustomNodes[0].Version != "1.0.0" {
		t.Fatalf("deprecated version: %v", err)
	}
	if !strings.Contains(log.String(), "warning: registry node comfyui-foo version 1.0.0 is deprecated") {
		t.Errorf("no deprecation warning: %q", log.String())
	}
}

// TestRegistryZipMembersStayInTheNodeFolder: a member that would land
// outside the node folder, or a link pointing out of it, fails the lock
// naming the node, the version and the member; nothing is unpacked.
func TestRegistryZipMembersStayInTheNodeFolder(t *testing.T) {
	reg := testsupport.NewComfyRegistry(t)
	t.Setenv("COMFY_REGISTRY_URL", reg.URL)
	cases := map[string]testsupport.ZipMember{
		"1.0.1": {Name: "../evil.py", Content: "x"},
		"1.0.2": {Name: "/etc/evil.py", Content: "x"},
		"1.0.3": {Name: "a/../../evil.py", Content: "x"},
		"1.0.4": {Name: "lib/out.py", Link: "/etc/passwd"},
		"1.0.5": {Name: "lib/out.py", Link: "../../outside.py"},
		"1.0.6": {Name: `a\..\..\evil.py`, Content: "x"},
	}
	for version, m := range cases {
		reg.PublishZip(t, "comfyui-bad", version, testsupport.MakeZip(t, testsupport.ZipMember{Name: "__init__.py", Content: "ok\n"}, m))
	}
	for version, m := range cases {
		cacheDir := testsupport.TempDir(t)
		_, err := resolveIn(registrySpec(t, `{"registry": "comfyui-bad", "version": "`+version+`"}`), cacheDir)
		if err == nil || !strings.Contains(err.Error(), "comfyui-bad@"+version) || !strings.Contains(err.Error(), fmt.Sprintf("%q", m.Name)) {
			t.Errorf("%s (%s): got %v", version, m.Name, err)
		}
		if entries, _ := os.ReadDir(filepath.Join(cacheDir, "registry", "git")); len(entries) != 0 {
			t.Errorf("%s: something was unpacked: %v", version, entries)
		}
	}
}

// resolveIn resolves s afresh with the cache root cacheDir.
func resolveIn(s *versions.Spec, cacheDir string, opts ...resolve.Option) (*versions.Lock, error) {
	l, _, err := resolve.Resolve(context.Background(), s, nil, append([]resolve.Option{resolve.WithCacheDir(cacheDir)}, opts...)...)
	return l, err
}

func plumbingHash(s string) plumbing.Hash { return plumbing.NewHash(s) }

// A lock on disk is untrusted: its sha256 names a cache path.
func TestRegistryLockCannotPickACachePath(t *testing.T) {
	cache := checkout.NewGitCache(testsupport.TempDir(t), false, nil)
	repo := checkout.NodeRepo(versions.Node{}, versions.LockedNode{Registry: "x", Version: "1.0.0", SHA256: "../../../../tmp/evil", URL: "https://example.invalid/x.zip"})
	if _, err := checkout.OpenMirror(context.Background(), cache, repo, strings.Repeat("a", 40)); err == nil || !strings.Contains(err.Error(), "not 64 lower-case hex") {
		t.Errorf("got %v", err)
	}
}

// TestRegistryZipGitFoldersAreSkippedAtAnyDepth: a zip made from a working
// copy may hold a nested submodule's .git file, and a crafted one a .GIT
// folder with hooks. git never has such entries in a tree and the checkout
// refuses them, so the lock must leave them out like a top-level .git; else
// the lock succeeds and every realize then fails on a commit it made itself.
func TestRegistryZipGitFoldersAreSkippedAtAnyDepth(t *testing.T) {
	reg := testsupport.NewComfyRegistry(t)
	t.Setenv("COMFY_REGISTRY_URL", reg.URL)
	reg.PublishZip(t, "comfyui-git", "1.0.0", testsupport.MakeZip(t,
		testsupport.ZipMember{Name: "__init__.py", Content: "ok\n"},
		testsupport.ZipMember{Name: ".GIT/hooks/post-checkout", Content: "#!/bin/sh\n", Mode: 0o755},
		testsupport.ZipMember{Name: "lib/.git", Content: "gitdir: /etc\n"},
		testsupport.ZipMember{Name: "lib/util.py", Content: "x = 1\n"},
	))
	s := registrySpec(t, `{"registry": "comfyui-git", "version": "1.0.0"}`)
	cacheDir := testsupport.TempDir(t)
	l, err := resolveIn(s, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	n := l.CustomNodes[0]
	repo, err := checkout.OpenMirror(context.Background(), checkout.NewGitCache(cacheDir, false, nil), checkout.NodeRepo(s.CustomNodes[0], n), n.Commit)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testsupport.TempDir(t), "node")
	if _, err := checkout.CheckoutTree(repo, n.Commit, dir, nil, false); err != nil {
		t.Fatalf("checkout of the registry's own commit: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "lib", "util.py")); err != nil || string(b) != "x = 1\n" {
		t.Errorf("lib/util.py: %q %v", b, err)
	}
	for _, p := range []string{".GIT", filepath.Join("lib", ".git")} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s was unpacked", p)
		}
	}
}

// A small zip that unpacks one huge member (a zip bomb) is refused before
// it is read into memory, naming the node and the member.
func TestRegistryZipBombMemberIsRefused(t *testing.T) {
	reg := testsupport.NewComfyRegistry(t)
	t.Setenv("COMFY_REGISTRY_URL", reg.URL)
	reg.PublishZip(t, "comfyui-bomb", "1.0.0", testsupport.MakeZip(t,
		testsupport.ZipMember{Name: "__init__.py", Content: "ok\n"},
		testsupport.ZipMember{Name: "weights.bin", Content: strings.Repeat("\x00", 256<<20+1)}, // one byte over the 256 MiB a member may hold
	))
	s := registrySpec(t, `{"registry": "comfyui-bomb", "version": "1.0.0"}`)
	_, err := resolveIn(s, testsupport.TempDir(t))
	if err == nil || !strings.Contains(err.Error(), "weights.bin") || !strings.Contains(err.Error(), "comfyui-bomb") {
		t.Fatalf("want an error naming the node and the member, got %v", err)
	}
}
