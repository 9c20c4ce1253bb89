package resolve_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

// project is a core and three nodes served by git http-backend: one
// followed on a branch, one on a tag, one pinned to a commit; the core on
// its default branch.
type project struct {
	srv                   *testsupport.GitServer
	core, dev, tagged, at *testsupport.Repo
	pinned                string // the commit the spec pins for node "at"
	spec                  *versions.Spec
	cacheDir              string
}

func newProject(t *testing.T) *project {
	t.Helper()
	p := &project{srv: testsupport.NewGitServer(t), cacheDir: testsupport.TempDir(t)}
	p.core = p.srv.NewRepo(t, "comfyanonymous/ComfyUI")
	p.core.Commit("core 1", map[string]string{"main.py": "1\n"})
	p.dev = p.srv.NewRepo(t, "org/dev")
	p.dev.Commit("dev on main", map[string]string{"__init__.py": "main\n"})
	p.dev.Git("checkout", "-q", "-b", "dev")
	p.dev.Commit("dev 1", map[string]string{"__init__.py": "dev 1\n"})
	p.tagged = p.srv.NewRepo(t, "org/tagged")
	p.tagged.Commit("tagged 1", map[string]string{"__init__.py": "v1\n"})
	p.tagged.Git("tag", "v1")
	p.tagged.Commit("tagged after v1", map[string]string{"__init__.py": "after\n"})
	p.at = p.srv.NewRepo(t, "org/at")
	p.pinned = p.at.Commit("at 1", map[string]string{"__init__.py": "at 1\n"})
	p.at.Commit("at 2", map[string]string{"__init__.py": "at 2\n"})
	p.spec = parseSpec(t, fmt.Sprintf(`{"schema_version": 2, "version_id": "demo", "comfy": {"repo": %q},
	  "custom_nodes": [
	    {"repo": %q, "ref": "dev", "name": "dev"},
	    {"repo": %q, "ref": "v1", "name": "tagged"},
	    {"repo": %q, "commit": %q, "name": "at"}]}`,
		p.srv.RepoURL("comfyanonymous/ComfyUI"), p.srv.RepoURL("org/dev"), p.srv.RepoURL("org/tagged"), p.srv.RepoURL("org/at"), p.pinned))
	return p
}

func (p *project) resolve(t *testing.T, old *versions.Lock, opts ...resolve.Option) (*versions.Lock, resolve.Changes) {
	t.Helper()
	l, c, err := resolve.Resolve(context.Background(), p.spec, old, append([]resolve.Option{resolve.WithCacheDir(p.cacheDir)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

// Every ref resolves to the commit git itself names: the default branch,
// a branch, a tag; a pinned commit is used as given.
func TestResolveRefsToTheCommitsGitNames(t *testing.T) {
	p := newProject(t)
	l, changes := p.resolve(t, nil)
	for _, c := range []struct {
		name      string
		got       versions.LockedRepo
		commit    string
		ref, from string
	}{
		{"comfy", l.Comfy, p.core.RevParse("main"), "", "refs/heads/main"},
		{"dev", l.CustomNodes[0].LockedRepo, p.dev.RevParse("dev"), "dev", "refs/heads/dev"},
		{"tagged", l.CustomNodes[1].LockedRepo, p.tagged.RevParse("v1"), "v1", "refs/tags/v1"},
		{"at", l.CustomNodes[2].LockedRepo, p.pinned, "", ""},
	} {
		if c.got.Commit != c.commit || c.got.Ref != c.ref || c.got.ResolvedRef != c.from {
			t.Errorf("%s: locked %s (ref %q from %q), want %s (ref %q from %q)", c.name, c.got.Commit, c.got.Ref, c.got.ResolvedRef, c.commit, c.ref, c.from)
		}
	}
	if l.VersionID != "demo" || l.SpecDigest != p.spec.Digest || len(l.CustomNodes) != 3 {
		t.Errorf("lock %+v", l)
	}
	if !changes.First || changes.None() {
		t.Errorf("a first lock: changes %+v", changes)
	}
	// Unchanged repositories: the same lock, nothing changed.
	again, changes := p.resolve(t, l)
	if !changes.None() || len(changes.Lines) != 0 {
		t.Errorf("unchanged rerun: changes %+v", changes)
	}
	if fmt.Sprint(again) != fmt.Sprint(l) {
		t.Errorf("unchanged rerun gives another lock:\n%+v\n%+v", again, l)
	}
}

// An online resolution sees moved branches and tags; WithUpdate moves
// only the named and keeps the rest; Changes names the old and new commit.
func TestUpdateMovesOnlyTheNamedAndChangesSayWhat(t *testing.T) {
	p := newProject(t)
	old, _ := p.resolve(t, nil)
	core := p.core.Commit("core 2", map[string]string{"main.py": "2\n"})
	dev := p.dev.Commit("dev 2", map[string]string{"__init__.py": "dev 2\n"})
	p.tagged.Git("tag", "-f", "v1")
	tagged := p.tagged.RevParse("v1")

	l, changes := p.resolve(t, old, resolve.WithUpdate("dev"))
	if l.CustomNodes[0].Commit != dev || l.Comfy.Commit != old.Comfy.Commit || l.CustomNodes[1].Commit != old.CustomNodes[1].Commit || l.CustomNodes[2].Commit != p.pinned {
		t.Fatalf("--update dev: core %s, dev %s, tagged %s, at %s", l.Comfy.Commit, l.CustomNodes[0].Commit, l.CustomNodes[1].Commit, l.CustomNodes[2].Commit)
	}
	want := []string{fmt.Sprintf("node dev: %s -> %s (refs/heads/dev)", old.CustomNodes[0].Commit, dev)}
	if changes.First || fmt.Sprint(changes.Lines) != fmt.Sprint(want) {
		t.Errorf("changes %q, want %q", changes.Lines, want)
	}

	l2, changes := p.resolve(t, l)
	if l2.Comfy.Commit != core || l2.CustomNodes[1].Commit != tagged || l2.CustomNodes[2].Commit != p.pinned {
		t.Fatalf("full resolve: core %s (want %s), tagged %s (want %s), at %s", l2.Comfy.Commit, core, l2.CustomNodes[1].Commit, tagged, l2.CustomNodes[2].Commit)
	}
	want = []string{
		fmt.Sprintf("comfy: %s -> %s (refs/heads/main)", old.Comfy.Commit, core),
		fmt.Sprintf("node tagged: %s -> %s (refs/tags/v1)", old.CustomNodes[1].Commit, tagged),
	}
	if fmt.Sprint(changes.Lines) != fmt.Sprint(want) {
		t.Errorf("changes %q, want %q", changes.Lines, want)
	}
}

// Locked, the old lock is the truth: no request reaches a server, and a
// lock that does not cover the spec is refused naming what it lacks.
func TestLockedRefusesALockThatDoesNotCoverTheSpec(t *testing.T) {
	p := newProject(t)
	old, _ := p.resolve(t, nil)
	p.dev.Commit("dev 2", map[string]string{"__init__.py": "dev 2\n"})
	before := p.srv.Requests()
	l, changes := p.resolve(t, old, resolve.WithLocked(true))
	if p.srv.Requests() != before {
		t.Errorf("a locked resolution made %d requests", p.srv.Requests()-before)
	}
	if l.CustomNodes[0].Commit != old.CustomNodes[0].Commit || !changes.None() {
		t.Errorf("locked: dev %s (want %s kept), changes %+v", l.CustomNodes[0].Commit, old.CustomNodes[0].Commit, changes)
	}

	extra := p.srv.NewRepo(t, "org/extra")
	extra.Commit("extra", map[string]string{"__init__.py": "\n"})
	p.spec = parseSpec(t, fmt.Sprintf(`{"schema_version": 2, "version_id": "demo", "comfy": {"repo": %q},
	  "custom_nodes": [{"repo": %q, "ref": "dev", "name": "dev"}, {"repo": %q, "name": "extra"}],
	  "models": [{"source": "https://example.invalid/m.safetensors", "target_subdir": "loras"}]}`,
		p.srv.RepoURL("comfyanonymous/ComfyUI"), p.srv.RepoURL("org/dev"), p.srv.RepoURL("org/extra")))
	_, _, err := resolve.Resolve(context.Background(), p.spec, old, resolve.WithCacheDir(p.cacheDir), resolve.WithLocked(true), resolve.WithLockName("versions/demo.lock.json"))
	var ce *versions.CoverageError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *versions.CoverageError", err)
	}
	for _, part := range []string{"versions/demo.lock.json", "custom_nodes[1] (extra): not in the lock", "models[0] (loras/m.safetensors): not in the lock"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %q", err, part)
		}
	}
	// WithoutModels: the nodes alone decide.
	_, _, err = resolve.Resolve(context.Background(), p.spec, old, resolve.WithLocked(true), resolve.WithoutModels(true))
	if err == nil || strings.Contains(err.Error(), "models[0]") || !strings.Contains(err.Error(), "extra") {
		t.Errorf("without models: %v", err)
	}
	// No lock at all.
	_, _, err = resolve.Resolve(context.Background(), p.spec, nil, resolve.WithLocked(true), resolve.WithLockName("versions/demo.lock.json"))
	if !errors.Is(err, versions.ErrNoLock) || !strings.Contains(err.Error(), "versions/demo.lock.json") {
		t.Errorf("no lock: %v", err)
	}
}

// Offline, refs are resolved from the mirrors as they are, without a
// request; a repository the cache has no mirror of is named with its ref.
func TestOfflineResolvesFromTheMirrors(t *testing.T) {
	p := newProject(t)
	old, _ := p.resolve(t, nil)
	p.dev.Commit("dev 2", map[string]string{"__init__.py": "dev 2\n"})
	before := p.srv.Requests()
	l, changes := p.resolve(t, nil, resolve.WithOffline(true))
	if p.srv.Requests() != before {
		t.Errorf("an offline resolution made %d requests", p.srv.Requests()-before)
	}
	if fmt.Sprint(l) != fmt.Sprint(old) || !changes.First {
		t.Errorf("offline lock differs from the online one:\n%+v\n%+v", l, old)
	}
	_, _, err := resolve.Resolve(context.Background(), p.spec, nil, resolve.WithCacheDir(testsupport.TempDir(t)), resolve.WithOffline(true))
	if err == nil || !strings.Contains(err.Error(), p.srv.RepoURL("org/dev")) || !strings.Contains(err.Error(), "dev") {
		t.Errorf("offline without mirrors: %v", err)
	}
}

// A node whose LFS files are left as pointers is locked with a warning
// naming them (only them).
func TestLFSPointersAreWarnedAbout(t *testing.T) {
	srv := testsupport.NewGitServer(t)
	core := srv.NewRepo(t, "comfyanonymous/ComfyUI")
	core.Commit("core", map[string]string{"main.py": "\n"})
	node := srv.NewRepo(t, "org/lfsnode")
	node.Commit("lfs", map[string]string{
		".gitattributes":            "*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
		"models/w.safetensors":      srv.AddLFSObject(bytes.Repeat([]byte("w8"), 100)),
		"docs/example.safetensors!": "not tracked\n",
	})
	spec := parseSpec(t, fmt.Sprintf(`{"schema_version": 2, "version_id": "demo", "comfy": {"repo": %q},
	  "custom_nodes": [{"repo": %q, "name": "lfsnode"}]}`, srv.RepoURL("comfyanonymous/ComfyUI"), srv.RepoURL("org/lfsnode")))
	var log bytes.Buffer
	if _, _, err := resolve.Resolve(context.Background(), spec, nil, resolve.WithCacheDir(testsupport.TempDir(t)), resolve.WithLog(&log)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "custom_nodes[0] (lfsnode): 1 Git LFS files are checked out as pointer text") || !strings.Contains(log.String(), "models/w.safetensors") || strings.Contains(log.String(), "example") {
		t.Errorf("warning does not name the pointer file (only):\n%s", log.String())
	}
}

// WithReadOnly locks what an online resolution locks, moved refs included,
// from one ref listing per repository: no object is fetched and no mirror
// changes, so a dry run plans with the commits the build then uses.
func TestReadOnlySeesMovedRefsAndWritesNothing(t *testing.T) {
	p := newProject(t)
	old, _ := p.resolve(t, nil)
	dev := p.dev.Commit("dev 2", map[string]string{"__init__.py": "dev 2\n"})
	mirror := p.cacheDir + "/git/" + strings.ReplaceAll(strings.TrimPrefix(p.srv.URL, "http://"), ":", "_") + "/org/dev.git"
	before := testsupport.Git(t, mirror, "rev-parse", "refs/heads/dev")
	served := len(p.srv.RequestLog())

	dry, changes := p.resolve(t, old, resolve.WithReadOnly(true))
	want := []string{fmt.Sprintf("node dev: %s -> %s (refs/heads/dev)", old.CustomNodes[0].Commit, dev)}
	if fmt.Sprint(changes.Lines) != fmt.Sprint(want) {
		t.Errorf("read-only changes %q, want %q", changes.Lines, want)
	}
	reqs := p.srv.RequestLog()[served:]
	if len(reqs) != 3 { // core, dev, tagged; "at" pins a commit
		t.Errorf("read-only resolution made %d requests, want one ref listing for each of 3 repositories: %q", len(reqs), reqs)
	}
	for _, r := range reqs {
		if !strings.Contains(r, "/info/refs") {
			t.Errorf("read-only resolution asked more than a ref listing: %s", r)
		}
	}
	if now := testsupport.Git(t, mirror, "rev-parse", "refs/heads/dev"); now != before {
		t.Errorf("the mirror's dev moved from %s to %s", before, now)
	}

	real, _ := p.resolve(t, old)
	for i, n := range real.CustomNodes {
		if dry.CustomNodes[i].Commit != n.Commit || dry.CustomNodes[i].ResolvedRef != n.ResolvedRef {
			t.Errorf("node %s: read-only locked %s (%s), the resolution %s (%s)", n.Name, dry.CustomNodes[i].Commit, dry.CustomNodes[i].ResolvedRef, n.Commit, n.ResolvedRef)
		}
	}
	if dry.Comfy.Commit != real.Comfy.Commit {
		t.Errorf("core: read-only %s, resolution %s", dry.Comfy.Commit, real.Comfy.Commit)
	}
}
