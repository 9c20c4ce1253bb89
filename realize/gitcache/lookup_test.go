package gitcache_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/gitcache"
)

// Lookup names the commits Resolve would, from one ref listing: a moved
// branch is seen, the mirror is left as it was (no object fetched, no ref
// moved), and the answer says the mirror lacks the new commit.
func TestLookupListsRefsAndFetchesNothing(t *testing.T) {
	fx := newFixture(t)
	dir := testsupport.TempDir(t)
	ctx := context.Background()
	c := gitcache.New(dir)
	for _, ref := range []string{"", "dev", "v1.0", "light", "refs/heads/dev"} {
		want, err := c.Resolve(ctx, fx.url, ref, "")
		if err != nil {
			t.Fatal(err)
		}
		got, inMirror, err := gitcache.New(dir).Lookup(ctx, fx.url, ref, "")
		if err != nil || got != want || !inMirror {
			t.Errorf("ref %q: Lookup = %+v (in mirror %v, %v), Resolve = %+v", ref, got, inMirror, err, want)
		}
	}
	mirror, _ := c.MirrorPath(fx.url)
	before := testsupport.Git(t, mirror, "rev-parse", "refs/heads/main")
	moved := fx.repo.Commit("three", map[string]string{"a.py": "three"})
	served := len(fx.srv.RequestLog())
	got, inMirror, err := gitcache.New(dir).Lookup(ctx, fx.url, "main", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != moved || got.Ref != "refs/heads/main" || inMirror {
		t.Errorf("after main moved: Lookup = %+v (in mirror %v), want %s not in the mirror", got, inMirror, moved)
	}
	reqs := fx.srv.RequestLog()[served:]
	if len(reqs) != 1 || !strings.Contains(reqs[0], "info/refs") {
		t.Errorf("Lookup made %d requests %q, want one ref listing", len(reqs), reqs)
	}
	if now := testsupport.Git(t, mirror, "rev-parse", "refs/heads/main"); now != before {
		t.Errorf("Lookup moved the mirror's main from %s to %s", before, now)
	}
	if exec.Command("git", "-C", mirror, "cat-file", "-e", moved).Run() == nil {
		t.Errorf("Lookup fetched %s into the mirror", moved)
	}
	if _, _, err := gitcache.New(dir).Lookup(ctx, fx.url, "nope", ""); err == nil || !strings.Contains(err.Error(), "ref nope: no such branch or tag") {
		t.Errorf("unknown ref: %v", err)
	}
	full := fx.repo.RevParse("dev")
	if got, inMirror, err := gitcache.New(dir).Lookup(ctx, fx.url, "", full); err != nil || got.Commit != full || !inMirror {
		t.Errorf("pinned commit: %+v %v %v", got, inMirror, err)
	}
}
