package main

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// planOut is build --dry-run --json's document.
type planOut struct {
	Plan struct {
		LockChanges []string `json:"lock_changes"`
		Parts       []struct {
			Part, Name, Key, Digest, Action string
			Upload                          []string
		}
	}
}

// TestBuildDoesWhatItsDryRunPlanned runs build --dry-run --json, then the
// build with the same inputs, and checks that every part the plan said
// would be packed was packed, every reuse was a reuse, every upload was
// uploaded (counted at the registry), and nothing else: for a first
// build, an unchanged rebuild and a rebuild after one node moved.
func TestBuildDoesWhatItsDryRunPlanned(t *testing.T) {
	sch := outputSchema(t)
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	env := v.Env(filepath.Join(v.Dir, "cache"))
	reg := testsupport.NewRegistry(t)
	repo := reg.Host + "/comfy/demo"
	args := []string{"build", "--json", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels, "--push", repo + ":v1"}
	lock := func() {
		if r := testsupport.Run(t, v.Dir, env, "lock", "--spec", v.SpecFile); r.Code != 0 {
			t.Fatalf("lock: %s", r.Stderr)
		}
	}
	// What the build reports for each action of the plan.
	state := map[string]string{"pack": "packed", "reuse-cache": "reused", "reuse-registry": "in-registry", "download": "reused"}

	round := func(name string, wantActions map[string]int) {
		t.Helper()
		var plan planOut
		jsonDoc(t, sch, testsupport.Run(t, v.Dir, env, append(args, "--dry-run")...), &plan)
		before, _ := reg.Uploads()
		var build jsonOut
		jsonDoc(t, sch, testsupport.Run(t, v.Dir, env, args...), &build)
		_, puts := reg.Uploads()
		uploaded := map[string]bool{}
		for _, d := range puts[before:] {
			uploaded[d] = true
		}
		if len(plan.Plan.Parts) != len(build.Parts) {
			t.Fatalf("%s: the plan has %d parts, the build made %d:\nplan %+v\nbuild %+v", name, len(plan.Plan.Parts), len(build.Parts), plan.Plan.Parts, build.Parts)
		}
		actions := map[string]int{}
		for i, p := range plan.Plan.Parts {
			b := build.Parts[i]
			actions[p.Action]++
			if p.Part != b.Part || (p.Part != "venv" && p.Name != b.Name) {
				t.Errorf("%s: part %d planned as %s %s, built as %s %s", name, i, p.Part, p.Name, b.Part, b.Name)
			}
			if state[p.Action] != b.State {
				t.Errorf("%s: %s %s: planned %s, the build says %s", name, p.Part, p.Name, p.Action, b.State)
			}
			if p.Digest != "" && p.Digest != b.Digest {
				t.Errorf("%s: %s %s: planned digest %s, built %s", name, p.Part, p.Name, p.Digest, b.Digest)
			}
			if planned := len(p.Upload) > 0; planned != uploaded[b.Digest] {
				t.Errorf("%s: %s %s: upload planned %v (%v), uploaded %v", name, p.Part, p.Name, planned, p.Upload, uploaded[b.Digest])
			}
		}
		for action, n := range wantActions {
			if actions[action] != n {
				t.Errorf("%s: %d parts planned %s, want %d (%v)", name, actions[action], action, n, actions)
			}
		}
	}

	lock()
	// core, two nodes, venv, config packed; two models downloaded.
	round("first build", map[string]int{"pack": 5, "download": 2})
	// Everything at hand: app layers from the cache, models from the registry.
	round("unchanged rebuild", map[string]int{"pack": 0, "reuse-cache": 5, "reuse-registry": 2})
	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"fix.py": "1"})
	lock()
	round("one node moved", map[string]int{"pack": 1, "reuse-cache": 4, "reuse-registry": 2})
	// The default branch moves and nothing locks it: an online build
	// resolves it afresh, so its dry run must plan the new commit (a
	// fetch and a pack), not the locked one's cached layer; the venv
	// stays (the node's requirements did not change).
	moved := v.Nodes["ComfyUI-KJNodes"].Commit("fix 2", map[string]string{"fix.py": "2"})
	cache := treeState(t, filepath.Join(v.Dir, "cache"))
	text := testsupport.Run(t, v.Dir, env, append(args[:1:1], append(args[2:], "--dry-run")...)...)
	fetch := regexp.MustCompile(`(?m)^  fetch\s+node\s+ComfyUI-KJNodes from `)
	if !strings.Contains(text.Stdout, moved) || !fetch.MatchString(text.Stdout) || !strings.Contains(text.Stdout, "as if the requirement lines of node ComfyUI-KJNodes") {
		t.Errorf("ref moved: the dry run does not name the new commit %s, its fetch and what it assumes of the venv:\n%s%s", moved, text.Stdout, text.Stderr)
	}
	if now := treeState(t, filepath.Join(v.Dir, "cache")); now != cache {
		t.Errorf("ref moved: the dry run changed the cache (mirror or lock):\nbefore %s\nafter  %s", cache, now)
	}
	var moves planOut
	jsonDoc(t, sch, testsupport.Run(t, v.Dir, env, append(args, "--dry-run")...), &moves)
	if len(moves.Plan.LockChanges) != 1 || !strings.Contains(moves.Plan.LockChanges[0], "node ComfyUI-KJNodes: ") || !strings.HasSuffix(moves.Plan.LockChanges[0], moved+" (refs/heads/main)") {
		t.Errorf("ref moved: the JSON plan's lock_changes %q, want the node's move to %s", moves.Plan.LockChanges, moved)
	}
	round("ref moved, not locked", map[string]int{"pack": 1, "reuse-cache": 4, "reuse-registry": 2})
}

// TestRealizeDoesWhatItsDryRunPlanned runs realize --dry-run, then
// realize, and checks that each checkout, the venv and each model the plan
// said would stay unchanged did, and every other was done again: for a
// first realize, an unchanged rerun and a rerun after one node moved.
func TestRealizeDoesWhatItsDryRunPlanned(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	keys := []string{"ComfyUI", "custom_nodes/gguf", "custom_nodes/ComfyUI-KJNodes"}
	round := func(name string, wantUnchanged int) {
		t.Helper()
		plan := s.realize(t, target, "--dry-run")
		if plan.Code != 0 {
			t.Fatalf("%s: dry run: %s", name, plan.Stderr)
		}
		res := s.realize(t, target)
		if res.Code != 0 {
			t.Fatalf("%s: realize: %s", name, res.Stderr)
		}
		done := res.Stdout + res.Stderr
		unchangedSteps := 0
		for _, key := range keys {
			planned := regexp.MustCompile(`(?m)^  (unchanged|check out)\s+` + regexp.QuoteMeta(key) + ` at`).FindStringSubmatch(plan.Stdout)
			did := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `\s+[0-9a-f]{12}\s+(unchanged|checked out)`).FindStringSubmatch(done)
			if planned == nil || did == nil {
				t.Fatalf("%s: %s: no plan line or no summary line:\n%s\n%s", name, key, plan.Stdout, done)
			}
			if (planned[1] == "unchanged") != (did[1] == "unchanged") {
				t.Errorf("%s: %s planned %q, realize did %q", name, key, planned[1], did[1])
			}
			if planned[1] == "unchanged" {
				unchangedSteps++
			}
		}
		venvPlanned := strings.Contains(plan.Stdout, "  unchanged   "+filepath.Join(target, ".venv"))
		venvKept := regexp.MustCompile(`(?m)^\s*\.venv\s.*unchanged`).MatchString(done)
		if venvPlanned != venvKept {
			t.Errorf("%s: venv planned unchanged %v, kept %v:\n%s\n%s", name, venvPlanned, venvKept, plan.Stdout, done)
		}
		if venvPlanned {
			unchangedSteps++
		}
		modelsKept := strings.Count(plan.Stdout, "  unchanged   "+filepath.Join(target, "models"))
		placed := regexp.MustCompile(`\((\d+) placed now\)`).FindStringSubmatch(done)
		if placed == nil || placed[1] != strconv.Itoa(2-modelsKept) {
			t.Errorf("%s: %d models planned unchanged, realize says %v:\n%s\n%s", name, modelsKept, placed, plan.Stdout, done)
		}
		if unchangedSteps+modelsKept != wantUnchanged {
			t.Errorf("%s: %d steps planned unchanged, want %d:\n%s", name, unchangedSteps+modelsKept, wantUnchanged, plan.Stdout)
		}
	}
	round("first realize", 0)
	round("unchanged rerun", 6)
	// gguf moves; its requirements stay, so the venv stays too.
	// (The dry run plans from the lock as it is: lock first, so the
	// realize does not move the ref itself.)
	s.gguf.Commit("fix", map[string]string{"fix.py": "x = 1"})
	s.gguf.Git("tag", "-f", "-a", "v0.1", "-m", "v0.1")
	if r := testsupport.Run(t, s.dir, s.env(), "lock", "--version-id", "demo"); r.Code != 0 {
		t.Fatalf("lock: %s", r.Stderr)
	}
	round("one node moved", 5)
	// The tag moves and nothing locks it: realize resolves it afresh, so
	// its dry run must plan the new commit's checkout, writing nothing.
	moved := s.gguf.Commit("fix 2", map[string]string{"fix.py": "x = 2"})
	s.gguf.Git("tag", "-f", "-a", "v0.1", "-m", "v0.1")
	cache := treeState(t, s.cache)
	if plan := s.realize(t, target, "--dry-run"); !strings.Contains(plan.Stdout, "custom_nodes/gguf at "+moved) {
		t.Errorf("tag moved: the dry run does not plan the new commit %s:\n%s%s", moved, plan.Stdout, plan.Stderr)
	}
	if now := treeState(t, s.cache); now != cache {
		t.Errorf("tag moved: the dry run changed the cache (mirror or lock):\nbefore %s\nafter  %s", cache, now)
	}
	round("tag moved, not locked", 5)
}

// treeState lists every file under dir with its size and modification
// time: two equal states mean nothing was written.
func treeState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d\n", path, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
