package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// mixedPlanOut is build --dry-run --json's document, with the outputs
// that are no registry.
type mixedPlanOut struct {
	Plan struct {
		Parts []struct {
			Part, Name, Digest, Action string
			Upload, Write              []string
		}
	}
}

// TestMixedOutputsDoWhatTheDryRunPlanned builds to a registry and an OCI
// layout at once (--push and --output), each round on a fresh cache as
// a CI runner does: a dry run, then the build. Every part planned to be
// uploaded was uploaded (counted at the registry), every part planned to
// be written to the layout was (its blob file appeared), nothing else;
// an unchanged rebuild reuses every layer both outputs hold, and one
// moved node is the one layer packed, uploaded and written.
func TestMixedOutputsDoWhatTheDryRunPlanned(t *testing.T) {
	sch := outputSchema(t)
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	reg := testsupport.NewRegistry(t)
	layout := filepath.Join(t.TempDir(), "layout")
	args := []string{"build", "--json", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels,
		"--push", reg.Host + "/comfy/demo:v1", "--output", "oci:" + layout + ":v1"}
	state := map[string]string{"pack": "packed", "reuse-cache": "reused", "reuse-registry": "in-registry", "download": "reused"}
	inLayout := func(digest string) bool {
		_, err := os.Stat(filepath.Join(layout, "blobs", "sha256", digest[len("sha256:"):]))
		return err == nil
	}

	round := func(name string, wantActions map[string]int) {
		t.Helper()
		env := v.Env(filepath.Join(t.TempDir(), "cache")) // a fresh runner
		if r := testsupport.Run(t, v.Dir, env, "lock", "--spec", v.SpecFile); r.Code != 0 {
			t.Fatalf("%s: lock: %s", name, r.Stderr)
		}
		var plan mixedPlanOut
		jsonDoc(t, sch, testsupport.Run(t, v.Dir, env, append(args, "--dry-run")...), &plan)
		written := map[string]bool{}
		for _, p := range plan.Plan.Parts {
			if p.Digest != "" {
				written[p.Digest] = inLayout(p.Digest)
			}
		}
		before, _ := reg.Uploads()
		var build jsonOut
		jsonDoc(t, sch, testsupport.Run(t, v.Dir, env, args...), &build)
		_, puts := reg.Uploads()
		uploaded := map[string]bool{}
		for _, d := range puts[before:] {
			uploaded[d] = true
		}
		if len(plan.Plan.Parts) != len(build.Parts) {
			t.Fatalf("%s: the plan has %d parts, the build made %d", name, len(plan.Plan.Parts), len(build.Parts))
		}
		actions := map[string]int{}
		for i, p := range plan.Plan.Parts {
			b := build.Parts[i]
			actions[p.Action]++
			if state[p.Action] != b.State {
				t.Errorf("%s: %s %s: planned %s, the build says %s", name, p.Part, p.Name, p.Action, b.State)
			}
			if planned := len(p.Upload) > 0; planned != uploaded[b.Digest] {
				t.Errorf("%s: %s %s: upload planned %v, uploaded %v", name, p.Part, p.Name, p.Upload, uploaded[b.Digest])
			}
			if planned, got := len(p.Write) > 0, !written[b.Digest] && inLayout(b.Digest); planned != got {
				t.Errorf("%s: %s %s: layout write planned %v, written %v", name, p.Part, p.Name, p.Write, got)
			}
		}
		for action, n := range wantActions {
			if actions[action] != n {
				t.Errorf("%s: %d parts planned %s, want %d (%v)", name, actions[action], action, n, actions)
			}
		}
	}

	// core, two nodes, venv, config packed; two models downloaded.
	round("first build", map[string]int{"pack": 5, "download": 2})
	// Both outputs hold every layer: nothing packed, uploaded or written.
	round("unchanged, fresh cache", map[string]int{"reuse-registry": 7})
	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"fix.py": "1"})
	round("one node moved, fresh cache", map[string]int{"pack": 1, "reuse-registry": 6})
}
