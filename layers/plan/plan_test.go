package plan_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/layers/plan"
)

func TestParseModelsMode(t *testing.T) {
	for in, want := range map[string]plan.ModelsMode{"": plan.Separate, "separate": plan.Separate, "bake": plan.Bake, "skip": plan.Skip} {
		if got, err := plan.ParseModelsMode(in); err != nil || got != want {
			t.Errorf("ParseModelsMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := plan.ParseModelsMode("baked")
	if err == nil || !strings.Contains(err.Error(), "--models") || !strings.Contains(err.Error(), `"baked"`) {
		t.Errorf("ParseModelsMode(baked): %v, want an error naming --models and the value", err)
	}
}

// TestPrint checks a person reads every part's decision, its uploads and
// the outputs written, or, without a usable lock, what would be resolved.
func TestPrint(t *testing.T) {
	var out bytes.Buffer
	(&plan.BuildPlan{VersionID: "demo", SpecFile: "demo.json", Base: "oci:/base", Models: plan.Separate, BaseLayers: 3,
		Parts: []plan.PlannedPart{
			{Kind: plan.Core, Name: "ComfyUI", Action: plan.ReuseCache, Digest: "sha256:aaaa", Size: 2048},
			{Kind: plan.Node, Name: "gguf", Action: plan.Pack, Fetch: []string{"https://example.com/gguf"}, Upload: []string{"localhost:5000/comfy"}, Write: []string{"oci:/out:demo"}},
		},
		Writes: []string{"oci:/out:demo"}}).Print(&out)
	for _, want := range []string{"build demo (demo.json) on oci:/base, models separate", "base: 3 layers",
		"reuse-cache    core   ComfyUI sha256:aaaa (2.0 KiB)", "pack           node   gguf", "upload         node   gguf to localhost:5000/comfy",
		"fetch          node   gguf from https://example.com/gguf", "write          node   gguf to oci:/out:demo",
		"write   oci:/out:demo"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	(&plan.BuildPlan{VersionID: "demo", LockProblem: errors.New("no lock"), Resolve: []string{"core https://example.com/ComfyUI"}}).Print(&out)
	if !strings.Contains(out.String(), "lock: no lock; would resolve:\n    core https://example.com/ComfyUI") {
		t.Errorf("plan without a lock:\n%s", out.String())
	}
}
