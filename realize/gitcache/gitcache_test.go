package gitcache_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/gitcache"
)

// fixture is a served repository with a branch, both kinds of tag, and a
// commit that only the dev branch reaches.
type fixture struct {
	srv  *testsupport.GitServer
	repo *testsupport.Repo
	url  string
}

func newFixture(t *testing.T) fixture {
	srv := testsupport.NewGitServer(t)
	r := srv.NewRepo(t, "nodes/ComfyUI-Test")
	r.Commit("one", map[string]string{"a.py": "one"})
	r.Git("tag", "light")
	r.Git("tag", "-a", "v1.0", "-m", "release 1.0")
	r.Commit("two", map[string]string{"a.py": "two"})
	r.Git("checkout", "-q", "-b", "dev")
	r.Commit("dev", map[string]string{"b.py": "dev"})
	r.Git("checkout", "-q", "main")
	return fixture{srv: srv, repo: r, url: srv.RepoURL("nodes/ComfyUI-Test")}
}

func TestResolveOverHTTP(t *testing.T) {
	fx := newFixture(t)
	c := gitcache.New(testsupport.TempDir(t))
	ctx := context.Background()
	cases := []struct {
		name, ref, commit, wantRev, wantRef string
	}{
		{"default branch", "", "", "main", "refs/heads/main"},
		{"branch", "dev", "", "dev", "refs/heads/dev"},
		{"annotated tag peels", "v1.0", "", "v1.0", "refs/tags/v1.0"},
		{"lightweight tag", "light", "", "light", "refs/tags/light"},
		{"full ref", "refs/heads/dev", "", "dev", "refs/heads/dev"},
		{"commit wins over ref", "dev", fx.repo.RevParse("v1.0"), "v1.0", ""},
		{"short commit", "", fx.repo.RevParse("dev")[:10], "dev", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Resolve(ctx, fx.url, tc.ref, tc.commit)
			if err != nil {
				t.Fatal(err)
			}
			if want := fx.repo.RevParse(tc.wantRev); got.Commit != want {
				t.Errorf("commit = %s, want git rev-parse %s = %s", got.Commit, tc.wantRev, want)
			}
			if got.Ref != tc.wantRef {
				t.Errorf("ref = %q, want %q", got.Ref, tc.wantRef)
			}
		})
	}
}

func TestMirrorLayoutAndBare(t *testing.T) {
	fx := newFixture(t)
	dir := testsupport.TempDir(t)
	c := gitcache.New(dir)
	if _, err := c.Resolve(context.Background(), fx.url, "", ""); err != nil {
		t.Fatal(err)
	}
	mirror, _ := c.MirrorPath(fx.url)
	host := strings.TrimPrefix(fx.srv.URL, "http://")
	host = strings.ReplaceAll(host, ":", "_")
	if want := filepath.Join(dir, host, "nodes", "ComfyUI-Test.git"); mirror != want {
		t.Fatalf("mirror path %s, want %s", mirror, want)
	}
	if out := testsupport.Git(t, mirror, "rev-parse", "--is-bare-repository"); out != "true" {
		t.Fatalf("mirror is not bare: %s", out)
	}
	fsck(t, mirror)
}

func TestMovedBranchSeenOnNextFetch(t *testing.T) {
	fx := newFixture(t)
	dir := testsupport.TempDir(t)
	first, err := gitcache.New(dir).Resolve(context.Background(), fx.url, "main", "")
	if err != nil {
		t.Fatal(err)
	}
	moved := fx.repo.Commit("three", map[string]string{"a.py": "three"})
	// A new Cache is a new process: it fetches again.
	second, err := gitcache.New(dir).Resolve(context.Background(), fx.url, "main", "")
	if err != nil {
		t.Fatal(err)
	}
	if first.Commit == second.Commit || second.Commit != moved {
		t.Fatalf("after the branch moved: first %s, second %s, want %s", first.Commit, second.Commit, moved)
	}
}

func TestDeletedBranchIsPruned(t *testing.T) {
	fx := newFixture(t)
	dir := testsupport.TempDir(t)
	if _, err := gitcache.New(dir).Resolve(context.Background(), fx.url, "dev", ""); err != nil {
		t.Fatal(err)
	}
	fx.repo.Git("branch", "-D", "dev")
	_, err := gitcache.New(dir).Resolve(context.Background(), fx.url, "dev", "")
	if err == nil || !strings.Contains(err.Error(), "ref dev: no such branch or tag") {
		t.Fatalf("resolving a deleted branch: %v", err)
	}
}

func TestOfflineUsesMirrorOnly(t *testing.T) {
	fx := newFixture(t)
	dir := testsupport.TempDir(t)
	online, err := gitcache.New(dir).Resolve(context.Background(), fx.url, "v1.0", "")
	if err != nil {
		t.Fatal(err)
	}
	fx.srv.Close()
	c := gitcache.New(dir)
	c.Offline = true
	offline, err := c.Resolve(context.Background(), fx.url, "v1.0", "")
	if err != nil {
		t.Fatal(err)
	}
	if offline != online {
		t.Fatalf("offline %+v, online %+v", offline, online)
	}
	head, err := c.Resolve(context.Background(), fx.url, "", "")
	if err != nil || head.Commit != fx.repo.RevParse("main") {
		t.Fatalf("offline default branch: %+v, %v", head, err)
	}
}

func TestErrorsNameRepoAndRef(t *testing.T) {
	fx := newFixture(t)
	dir := testsupport.TempDir(t)
	ctx := context.Background()
	offline := gitcache.New(dir)
	offline.Offline = true
	_, err := offline.Resolve(ctx, fx.url, "main", "")
	assertErr(t, err, fx.url, "no mirror in the cache")

	c := gitcache.New(dir)
	_, err = c.Resolve(ctx, fx.url, "nope", "")
	assertErr(t, err, fx.url, "ref nope: no such branch or tag")
	_, err = c.Resolve(ctx, fx.url, "", strings.Repeat("ab", 20))
	assertErr(t, err, fx.url, "commit "+strings.Repeat("ab", 20)+": not found")

	_, err = c.Resolve(ctx, fx.srv.RepoURL("missing"), "", "")
	assertErr(t, err, fx.srv.RepoURL("missing"), "list refs")
	if entries, _ := filepath.Glob(filepath.Join(dir, "*", "missing*.git")); len(entries) != 0 {
		t.Fatalf("a failed clone left %v behind", entries)
	}
}

func TestFileURL(t *testing.T) {
	r := testsupport.NewRepo(t, filepath.Join(testsupport.TempDir(t), "core"))
	want := r.Commit("init", map[string]string{"main.py": "print(1)"})
	dir := testsupport.TempDir(t)
	got, err := gitcache.New(dir).Resolve(context.Background(), r.FileURL(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != want {
		t.Fatalf("commit %s, want %s", got.Commit, want)
	}
	mirror, _ := gitcache.New(dir).MirrorPath(r.FileURL())
	if !strings.HasPrefix(mirror, filepath.Join(dir, "file")) {
		t.Fatalf("file:// mirror at %s", mirror)
	}
	fsck(t, mirror)
}

func TestCredentialsNotInErrors(t *testing.T) {
	fx := newFixture(t)
	secret := "s3cr3t-token-value"
	withCreds := strings.Replace(fx.srv.RepoURL("missing"), "http://", "http://user:"+secret+"@", 1)
	_, err := gitcache.New(testsupport.TempDir(t)).Resolve(context.Background(), withCreds, "", "")
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the password or is nil: %v", err)
	}
}

func assertErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func fsck(t *testing.T, dir string) {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "fsck", "--full", "--strict").CombinedOutput()
	if err != nil {
		t.Fatalf("git fsck %s: %v\n%s", dir, err, out)
	}
}

// A fresh clone's log says it cloned; a second run with the mirror says it
// checked and fetched nothing (review of issue 12: a clone ended with
// "up to date").
func TestLogSaysClonedThenChecked(t *testing.T) {
	fx := newFixture(t)
	dir := testsupport.TempDir(t)
	var first, second strings.Builder
	c := gitcache.New(dir)
	c.Log = &first
	if _, err := c.Resolve(context.Background(), fx.url, "", ""); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(first.String(), "cloning "+fx.url) || !strings.Contains(first.String(), "cloned "+fx.url+" (") {
		t.Errorf("log of a fresh clone:\n%s", first.String())
	}
	if strings.Contains(first.String(), "fetched") || strings.Contains(first.String(), "up to date") {
		t.Errorf("a fresh clone's log reads like a fetch into an existing mirror:\n%s", first.String())
	}
	again := gitcache.New(dir)
	again.Log = &second
	if _, err := again.Resolve(context.Background(), fx.url, "", ""); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(second.String(), "checking "+fx.url) || !strings.Contains(second.String(), "nothing fetched") || strings.Contains(second.String(), "cloned") {
		t.Errorf("log of a run with the mirror:\n%s", second.String())
	}
}
