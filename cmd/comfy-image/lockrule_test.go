package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/versions"
)

// since returns the git requests served after the first n.
func since(srv *testsupport.GitServer, n int) []string { return srv.RequestLog()[n:] }

// onlyListings fails unless reqs are exactly one ref listing per repo.
func onlyListings(t *testing.T, reqs []string, repos ...string) {
	t.Helper()
	if len(reqs) != len(repos) {
		t.Fatalf("%d requests, want %d ref listings (one per repository):\n%s", len(reqs), len(repos), strings.Join(reqs, "\n"))
	}
	for _, repo := range repos {
		found := false
		for _, r := range reqs {
			if strings.HasPrefix(r, "GET /"+repo) && strings.Contains(r, "/info/refs?service=git-upload-pack") {
				found = true
			}
		}
		if !found {
			t.Errorf("no ref listing of %s in:\n%s", repo, strings.Join(reqs, "\n"))
		}
	}
}

var projectRepos = []string{"comfyanonymous/ComfyUI", "city96/ComfyUI-GGUF", "kijai/ComfyUI-KJNodes"}

func TestUnchangedOnlineLockOnlyListsRefs(t *testing.T) {
	p := newProject(t)
	if res := p.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	file := versions.LockPath(p.cache, "demo")
	before, _ := os.Stat(file)
	n := len(p.srv.RequestLog())
	res := p.run(t, "lock", "--version-id", "demo")
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	onlyListings(t, since(p.srv, n), projectRepos...)
	if !strings.Contains(res.Stdout, "changes: none") || !strings.Contains(res.Stdout, file+" unchanged, not written") || strings.Contains(res.Stdout, "wrote ") {
		t.Errorf("an unchanged lock does not say it left the file as it was:\n%s", res.Stdout)
	}
	if after, _ := os.Stat(file); !after.ModTime().Equal(before.ModTime()) {
		t.Error("an unchanged lock was rewritten")
	}
}

func TestRealizeResolvesRefsAfreshAndLockedStaysOffTheNetwork(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	// Unchanged, online: one listing per repository, and one HEAD per
	// model pinned from a branch of the hub (followed to the CDN), nothing
	// else.
	n, hf := len(s.srv.RequestLog()), len(s.hf.Requests())
	if res := s.realize(t, target); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	onlyListings(t, since(s.srv, n), projectRepos...)
	hubHeads := 0
	for _, r := range s.hf.Requests()[hf:] {
		if r.Method != "HEAD" {
			t.Errorf("an unchanged rerun sent %s %s to the model server", r.Method, r.Path)
		}
		if r.Host == "hub" {
			hubHeads++
		}
	}
	if hubHeads != len(s.models) {
		t.Errorf("%d HEADs to the hub, want one per model (%d)", hubHeads, len(s.models))
	}
	hf = len(s.hf.Requests())
	// --locked and --offline: no request at all.
	for _, flag := range []string{"--locked", "--offline"} {
		n = len(s.srv.RequestLog())
		if res := s.realize(t, target, flag); res.Code != 0 {
			t.Fatalf("%s: %s", flag, res.Stderr)
		}
		if got := since(s.srv, n); len(got) != 0 {
			t.Errorf("%s rerun made git requests: %v", flag, got)
		}
	}
	if got := s.hf.Requests()[hf:]; len(got) != 0 {
		t.Errorf("reruns asked the model server: %v", got)
	}
	// master moves: an online realize (not only `lock`) takes it; --locked
	// keeps the recorded commit.
	old := s.lock(t).Comfy.Commit
	moved := s.core.Commit("fix", map[string]string{"fix.py": "print('fixed')\n"})
	n = len(s.srv.RequestLog())
	lockedTarget := filepath.Join(s.dir, "locked")
	if res := s.realize(t, lockedTarget, "--locked"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(lockedTarget, "ComfyUI", "fix.py")); !os.IsNotExist(err) {
		t.Fatal("--locked took the moved branch")
	}
	if got := since(s.srv, n); len(got) != 0 {
		t.Errorf("--locked made git requests: %v", got)
	}
	res := s.realize(t, target)
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if got := s.lock(t).Comfy.Commit; got != moved {
		t.Fatalf("lock has %s after master moved to %s", got, moved)
	}
	if readFile(t, target, "ComfyUI/fix.py") != "print('fixed')\n" {
		t.Error("the moved commit is not checked out")
	}
	if want := fmt.Sprintf("lock: comfy: %s -> %s", old, moved); !strings.Contains(res.Stderr, want) {
		t.Errorf("realize does not report the move %q:\n%s", want, res.Stderr)
	}
	fetches := 0
	for _, r := range since(s.srv, n) {
		if strings.HasPrefix(r, "POST ") {
			fetches++
			if !strings.Contains(r, "comfyanonymous/ComfyUI") {
				t.Errorf("fetched an unchanged repository: %s", r)
			}
		}
	}
	if fetches != 1 {
		t.Errorf("%d fetches, want 1 (the moved core)", fetches)
	}
}

func TestLockedNamesWhatTheLockDoesNotCover(t *testing.T) {
	s := newSite(t)
	if res := s.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	// The lock of `lock` alone pins no model.
	res := s.realize(t, filepath.Join(s.dir, "t"), "--locked")
	if res.Code != 1 || !strings.Contains(res.Stderr, "models[0] (vae/wan_vae.safetensors): not in the lock") {
		t.Fatalf("models not in the lock: exit %d\n%s", res.Code, res.Stderr)
	}
	// A pinned commit other than the locked one.
	first := s.gguf.RevParse("main~1")
	spec := readFile(t, s.dir, "versions/demo.json")
	os.WriteFile(filepath.Join(s.dir, "versions", "demo.json"),
		[]byte(strings.Replace(spec, `"ref": "v0.1"`, `"commit": "`+first+`"`, 1)), 0o644)
	res = s.realize(t, filepath.Join(s.dir, "t"), "--locked", "--skip-models")
	if res.Code != 1 || !strings.Contains(res.Stderr, "custom_nodes[0] (gguf): commit "+first+", the lock has "+s.lock(t).CustomNodes[0].Commit) {
		t.Fatalf("pinned commit differs: exit %d\n%s", res.Code, res.Stderr)
	}
}

func TestCommittedLockFileWorkflow(t *testing.T) {
	s := newSite(t)
	lockFile := filepath.Join(s.dir, "versions", "demo.lock.json")
	if res := s.realize(t, filepath.Join(s.dir, "dev"), "--lock", lockFile); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if _, err := os.Stat(versions.LockPath(s.cache, "demo")); !os.IsNotExist(err) {
		t.Fatal("--lock FILE also wrote the cache's lock")
	}
	committed, err := os.ReadFile(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	var l versions.Lock
	if err := json.Unmarshal(committed, &l); err != nil || len(l.Python.Packages) != 3 || len(l.Models) != 2 {
		t.Fatalf("the lock file lacks the Python set or the models: %v\n%s", err, committed)
	}
	// master moves after the lock was committed; CI, with an empty cache,
	// builds exactly the committed lock and leaves the file as it was.
	s.core.Commit("later", map[string]string{"later.py": "1\n"})
	ci := filepath.Join(s.dir, "ci")
	res := testsupport.Run(t, s.dir, []string{"COMFY_CACHE=" + filepath.Join(s.dir, "ci-cache"), "HF_ENDPOINT=" + s.hf.URL},
		"realize", "--version-id", "demo", "--target", ci, "--wheels-dir", s.wheels, "--locked", "--lock", lockFile)
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if fmt.Sprint(snapshot(t, filepath.Join(s.dir, "dev"), ".comfy-image")) != fmt.Sprint(snapshot(t, ci, ".comfy-image")) {
		t.Fatal("CI's target differs from the developer's")
	}
	if now, _ := os.ReadFile(lockFile); string(now) != string(committed) {
		t.Fatal("--locked rewrote the committed lock")
	}
}

func TestLockUpdateMovesOnlyTheNamedAndPrintsChanges(t *testing.T) {
	p := newProject(t)
	if res := p.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	old := p.lock(t)
	p.core.Git("checkout", "-q", "master")
	core := p.core.Commit("core 2", map[string]string{"b.py": "2"})
	kj := p.extra.Commit("kj 2", map[string]string{"b.py": "2"})
	res := p.run(t, "lock", "--version-id", "demo", "--update", "ComfyUI-KJNodes")
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	l := p.lock(t)
	if l.Comfy.Commit != old.Comfy.Commit || l.CustomNodes[1].Commit != kj {
		t.Fatalf("--update ComfyUI-KJNodes: core %s (want %s kept), KJNodes %s (want %s)", l.Comfy.Commit, old.Comfy.Commit, l.CustomNodes[1].Commit, kj)
	}
	want := fmt.Sprintf("node ComfyUI-KJNodes: %s -> %s (refs/heads/main)", old.CustomNodes[1].Commit, kj)
	if !strings.Contains(res.Stdout, "changes (1):") || !strings.Contains(res.Stdout, want) {
		t.Errorf("changes not printed (want %q):\n%s", want, res.Stdout)
	}
	res = p.run(t, "lock", "--version-id", "demo")
	if want := fmt.Sprintf("comfy: %s -> %s (refs/heads/master)", old.Comfy.Commit, core); res.Code != 0 || !strings.Contains(res.Stdout, want) {
		t.Errorf("full lock: exit %d, want %q:\n%s", res.Code, want, res.Stdout)
	}
	res = p.run(t, "lock", "--version-id", "demo", "--update", "nope")
	if res.Code != 2 || !strings.Contains(res.Stderr, "--update nope") {
		t.Errorf("unknown name: exit %d\n%s", res.Code, res.Stderr)
	}
}

func TestPythonSetIsCompleteKeptAndCovering(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	// A node adds a requirement: the new set is the whole environment,
	// not only what pip added.
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "delta", Version: "3.0"})
	s.extra.Commit("delta", map[string]string{"requirements.txt": "gamma\ndelta\n"})
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	set := func() string {
		var names []string
		for _, p := range s.lock(t).Python.Packages {
			names = append(names, p.Name+"=="+p.Version)
		}
		return strings.Join(names, " ")
	}
	if got := set(); got != "alpha==1.0 beta==1.2 delta==3.0 gamma==2.0" {
		t.Fatalf("Python set after a node added delta: %s", got)
	}
	inputs := s.lock(t).Python.Inputs
	// The core moves without touching requirements: the set is kept, pip
	// does not resolve again.
	s.core.Commit("docs", map[string]string{"README.md": "docs\n"})
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "gamma", Version: "2.5"})
	res := s.realize(t, filepath.Join(s.dir, "other"), "--skip-models")
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if strings.Contains(res.Stderr, "one resolver run") || set() != "alpha==1.0 beta==1.2 delta==3.0 gamma==2.0" || s.lock(t).Python.Inputs != inputs {
		t.Fatalf("unchanged requirements resolved again: set %s\n%s", set(), res.Stderr)
	}
	// A lock whose set misses a requirement is refused by --locked.
	l := s.lock(t)
	var kept []versions.LockedPackage
	for _, p := range l.Python.Packages {
		if p.Name != "delta" {
			kept = append(kept, p)
		}
	}
	l.Python.Packages = kept
	if err := versions.WriteLock(versions.LockPath(s.cache, "demo"), l); err != nil {
		t.Fatal(err)
	}
	res = s.realize(t, filepath.Join(s.dir, "third"), "--skip-models", "--locked")
	if res.Code != 1 || !strings.Contains(res.Stderr, "node ComfyUI-KJNodes requires delta") {
		t.Fatalf("--locked with a set missing delta: exit %d\n%s", res.Code, res.Stderr)
	}
}

func TestChangedWheelInWheelsDirIsNamed(t *testing.T) {
	s := newSite(t)
	if res := s.realize(t, filepath.Join(s.dir, "first"), "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	// Same file name, other bytes.
	wheel := testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "gamma", Version: "2.0", Files: map[string]string{"evil.py": "x = 1\n"}})
	for _, flags := range [][]string{{"--locked"}, {}} {
		res := s.realize(t, filepath.Join(s.dir, "second"), append([]string{"--skip-models"}, flags...)...)
		if res.Code != 1 || !strings.Contains(res.Stderr, wheel) || !strings.Contains(res.Stderr, "1 wheel differs from the lock") {
			t.Fatalf("%v: changed wheel: exit %d\n%s", flags, res.Code, res.Stderr)
		}
	}
}

func TestModelFromABranchIsResolvedAfresh(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	old := s.lock(t)
	// main of the model repository moves to new content for the unet.
	unet := randomBytes(t, 200_000)
	s.hf.Add("Comfy-Org/Wan/split/unet/wan_unet.gguf", unet)
	s.hf.Commit = strings.Repeat("b", 40)
	// --locked keeps the recorded file.
	locked := filepath.Join(s.dir, "locked")
	if res := s.realize(t, locked, "--locked"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if readFile(t, locked, "models/unet/wan_unet.gguf") != string(s.models["unet/wan_unet.gguf"]) {
		t.Fatal("--locked placed the moved model")
	}
	res := s.realize(t, target)
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if readFile(t, target, "models/unet/wan_unet.gguf") != string(unet) {
		t.Fatal("an online realize kept the model main no longer holds")
	}
	var was, now versions.LockedModel
	for i, m := range s.lock(t).Models {
		if m.Dest == "unet/wan_unet.gguf" {
			was, now = old.Models[i], m
		}
	}
	if now.SHA256 == was.SHA256 || now.Revision != strings.Repeat("b", 40) {
		t.Fatalf("lock model %+v (was %+v)", now, was)
	}
	if want := "lock: model unet/wan_unet.gguf: sha256 " + was.SHA256 + " -> " + now.SHA256; !strings.Contains(res.Stderr, want) {
		t.Errorf("the move is not reported (%q):\n%s", want, res.Stderr)
	}
}

// `lock --update MODEL` resolves the model again and prints the change; it
// used to drop the model's pin until the next realize or build.
func TestLockUpdateModelRePinsItAndPrintsTheChange(t *testing.T) {
	s := newSite(t)
	lock := func(args ...string) testsupport.Result {
		t.Helper()
		res := testsupport.Run(t, s.dir, s.env(), append([]string{"lock", "--version-id", "demo"}, args...)...)
		if res.Code != 0 {
			t.Fatalf("lock %v: exit %d\n%s", args, res.Code, res.Stderr)
		}
		return res
	}
	lock()
	lock("--update", "unet")
	was := s.lock(t)
	if len(was.Models) != 1 || was.Models[0].Dest != "unet/wan_unet.gguf" || was.Models[0].Revision != s.hf.Commit {
		t.Fatalf("--update unet pins %+v, want the unet at %s", was.Models, s.hf.Commit)
	}
	unet := s.hf.Add("Comfy-Org/Wan/split/unet/wan_unet.gguf", randomBytes(t, 1000))
	s.hf.Commit = strings.Repeat("b", 40)
	res := lock("--update", "unet")
	now := s.lock(t).Models
	if len(now) != 1 || now[0].SHA256 != unet || now[0].Size != 1000 || now[0].Revision != s.hf.Commit {
		t.Fatalf("--update unet after main moved: %+v", now)
	}
	want := fmt.Sprintf("model unet/wan_unet.gguf: sha256 %s -> %s, revision %s -> %s", was.Models[0].SHA256, unet, was.Models[0].Revision, s.hf.Commit)
	if !strings.Contains(res.Stdout, "changes (1):") || !strings.Contains(res.Stdout, want) {
		t.Errorf("the change is not printed (want %q):\n%s", want, res.Stdout)
	}
	if _, err := os.Stat(filepath.Join(s.cache, "models", "sha256", unet)); err == nil {
		t.Error("lock downloaded the model")
	}
}
