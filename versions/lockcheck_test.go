package versions

import (
	"strings"
	"testing"
)

// A lock from `comfy-image lock` pins no model that lock cannot pin: the
// error of --locked tells, for each model, what does pin it (lock
// --update NAME asks the hub for an hf:// model; any other source is
// pinned by the realize or build that downloads it), and counts its
// problems in good English.
func TestCoverageErrorSaysWhatPinsEachModel(t *testing.T) {
	s, err := Parse("v1.json", []byte(validSpec), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	l := &Lock{VersionID: "v1", Comfy: LockedRepo{Repo: s.Comfy.Repo, Ref: "master", Commit: strings.Repeat("a", 40)}}
	for _, n := range s.CustomNodes {
		l.CustomNodes = append(l.CustomNodes, LockedNode{Name: n.Name, LockedRepo: LockedRepo{Repo: n.Repo.Repo, Commit: strings.Repeat("b", 40)}})
	}
	msg := l.Covers(s, "v1.lock.json", false).Error()
	lines := strings.Split(msg, "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "(2 problems") || strings.Contains(lines[0], "run `comfy-image lock` without --locked") {
		t.Errorf("header: %q; want 2 problems and no advice to run lock (it does not pin these models)", lines[0])
	}
	hf, https := lines[1], lines[2]
	if !strings.Contains(hf, "models[0] (diffusion_models/unet.safetensors): not in the lock") || !strings.Contains(hf, "`comfy-image lock --update unet`") {
		t.Errorf("hf:// model: %q; want the advice `comfy-image lock --update unet`", hf)
	}
	if !strings.Contains(https, "models[1] (checkpoints/vae.safetensors): not in the lock") ||
		!strings.Contains(https, "`comfy-image realize` or `comfy-image build` without --locked") || strings.Contains(https, "comfy-image lock") {
		t.Errorf("https model: %q; want the advice to realize or build without --locked, not lock", https)
	}

	l.Models = []LockedModel{{Source: s.Models[0].Source, Dest: s.Models[0].Dest(), SHA256: "c"}}
	l.Comfy.Ref = "main"
	msg = l.Covers(s, "v1.lock.json", false).Error()
	if !strings.Contains(msg, "(2 problems; ") || !strings.Contains(msg, "`comfy-image lock` without --locked resolves the core and nodes") {
		t.Errorf("a moved core ref and a model: %q", msg)
	}
	l.Models = append(l.Models, LockedModel{Source: s.Models[1].Source, Dest: s.Models[1].Dest(), SHA256: "d"})
	if msg = l.Covers(s, "v1.lock.json", false).Error(); !strings.Contains(msg, "(1 problem; ") {
		t.Errorf("one problem: %q", msg)
	}
}
