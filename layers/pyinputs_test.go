package layers_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/versions"
)

// packedOnly fails unless the moved node is the one part packed (the venv
// came from the registry).
func packedOnly(t *testing.T, res *layers.Result, want string) {
	t.Helper()
	var packed []string
	for _, p := range res.Parts {
		if p.Action == plan.Pack {
			packed = append(packed, p.Label())
		}
	}
	if len(packed) != 1 || packed[0] != want {
		t.Errorf("packed %v, want %s only (the venv from the registry)", packed, want)
	}
}

// The fresh CI runner with a committed lock that moves one node
// (its requirements unchanged), an empty cache and the image built before
// at the push reference: only that node is cloned (for its layer and its
// requirements; the others' come from the lock's per-source records), the
// venv's layer is reused without a wheel, 2 blobs go up.
func TestLockedFreshRunnerClonesOnlyTheMovedNode(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	base := pushBase(t, reg, testsupport.SyntheticBase(t), "small")
	lockFile := filepath.Join(v.Dir, "demo.lock.json")
	withLock := func(o *layers.BuildOptions) { o.LockFile = lockFile }
	runner(t, v, reg, base, t.TempDir(), withLock)

	// What `lock --update ComfyUI-KJNodes` does to the committed lock.
	moved := v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"nodes.py": "FIXED = True\n"})
	l, err := versions.ReadLock(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Python.ImageRequirements) != 3 {
		t.Errorf("the lock records the requirements of %d sources, want 3", len(l.Python.ImageRequirements))
	}
	for i, n := range l.CustomNodes {
		if n.Name == "ComfyUI-KJNodes" {
			l.CustomNodes[i].Commit = moved
		}
	}
	if err := versions.WriteLock(lockFile, l); err != nil {
		t.Fatal(err)
	}

	cache := t.TempDir()
	locked := func(o *layers.BuildOptions) { o.Locked, o.WheelsDir = true, t.TempDir() }
	res, reqs := runner(t, v, reg, base, cache, withLock, locked)
	packedOnly(t, res, "node ComfyUI-KJNodes")
	if got := testsupport.Mirrors(t, gitcache.Folder(cache)); len(got) != 1 || got[0] != "ComfyUI-KJNodes" {
		t.Errorf("the fresh cache holds the mirrors %v, want only the moved node's", got)
	}
	if up := blobUploads(reqs); len(up) != 2 {
		t.Errorf("uploaded %d blobs (%v), want 2", len(up), up)
	}

	// A lock without the records (written before them) is read as before:
	// every source's requirements are read, and the set is kept.
	l.Python.ImageRequirements = nil
	if err := versions.WriteLock(lockFile, l); err != nil {
		t.Fatal(err)
	}
	cache = t.TempDir()
	res, _ = runner(t, v, reg, base, cache, withLock, locked)
	if got := testsupport.Mirrors(t, gitcache.Folder(cache)); len(got) != 3 {
		t.Errorf("a lock without records: the cache holds the mirrors %v, want all three read", got)
	}
	for _, p := range res.Parts {
		if p.Action == plan.Pack {
			t.Errorf("a lock without records: %s packed", p.Label())
		}
	}
}

// Without the lock the image's python-set label carries the same records:
// a fresh runner reads again only the moved node's requirements (an online
// build fetches every mirror to resolve its ref) and reuses the venv.
func TestFreshRunnerReadsOnlyTheMovedNodesRequirements(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	base := pushBase(t, reg, testsupport.SyntheticBase(t), "small")
	runner(t, v, reg, base, t.TempDir())

	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"nodes.py": "FIXED = True\n"})
	var log strings.Builder
	res, reqs := runner(t, v, reg, base, t.TempDir(), func(o *layers.BuildOptions) { o.WheelsDir, o.Log = t.TempDir(), &log })
	packedOnly(t, res, "node ComfyUI-KJNodes")
	if !strings.Contains(log.String(), "requirements read again from 1 of 3 repositories") {
		t.Errorf("the records of the image's label were not used:\n%s", log.String())
	}
	if up := blobUploads(reqs); len(up) != 2 {
		t.Errorf("uploaded %d blobs (%v), want 2", len(up), up)
	}
}
