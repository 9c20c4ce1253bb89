package main

import (
	"path/filepath"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// planOut is build --dry-run --json's document.
type planOut struct {
	Plan struct {
		Parts []struct {
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
}
