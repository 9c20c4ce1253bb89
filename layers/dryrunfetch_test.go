package layers_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

// TestDryRunNamesWhatAFreshRunnerFetches is a CI runner with a committed
// lock (--lock FILE --locked) and an empty cache: its dry run plans every
// app layer packed, the core's and each node's repository fetched first
// (as the lock names them), and each model downloaded. After the build
// the same dry run fetches and packs nothing.
func TestDryRunNamesWhatAFreshRunnerFetches(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	first := testsupport.TempDir(t)
	res := build(t, v, base, first, nil)
	lockFile := versions.LockPath(first, "demo")
	fresh := testsupport.TempDir(t)
	locked := func(o *layers.BuildOptions) { o.LockFile, o.Locked = lockFile, true }
	dryRun := func() *plan.BuildPlan {
		t.Helper()
		o := layers.BuildOptions{Options: realize.Options{CacheDir: fresh}, Base: base, WheelsDir: v.Wheels,
			LookupEnv: func(k string) (string, bool) {
				if k == "HF_ENDPOINT" {
					return v.HF.URL, true
				}
				return os.LookupEnv(k)
			},
			Getenv: func(string) string { return "" }}
		locked(&o)
		p, err := layers.PlanBuild(context.Background(), load(t, v), o, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	repos := map[string]string{"ComfyUI": res.Lock.Comfy.Repo}
	for _, n := range res.Lock.CustomNodes {
		repos[n.Name] = n.Repo
	}
	p := dryRun()
	if len(p.Parts) == 0 {
		t.Fatalf("no parts planned: %v", p.LockProblem)
	}
	for _, pp := range p.Parts {
		var want []string
		switch pp.Kind {
		case plan.Core, plan.Node:
			want = []string{repos[pp.Name]}
		}
		if !slices.Equal(pp.Fetch, want) {
			t.Errorf("%s %s: fetch %v, want %v", pp.Kind, pp.Name, pp.Fetch, want)
		}
		wantAction := plan.Pack
		if pp.Kind == plan.Model {
			wantAction = plan.Download
		}
		if pp.Action != wantAction {
			t.Errorf("%s %s: %s, want %s", pp.Kind, pp.Name, pp.Action, wantAction)
		}
	}

	build(t, v, base, fresh, locked)
	for _, pp := range dryRun().Parts {
		if len(pp.Fetch) != 0 || pp.Action == plan.Pack || pp.Action == plan.Download {
			t.Errorf("after the build: %s %s: %s, fetch %v", pp.Kind, pp.Name, pp.Action, pp.Fetch)
		}
	}
}
