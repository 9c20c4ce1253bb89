package realize

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/versions"
)

func TestExtraModelPathsListsEveryFolder(t *testing.T) {
	spec := &versionsSpecForTest
	yaml := string(ExtraModelPaths(spec, "models"))
	for _, want := range []string{"  base_path: models\n", "  is_default: true\n", "  diffusion_models: |\n    unet\n    diffusion_models\n",
		"  text_encoders: |\n    clip\n    text_encoders\n", "  ipadapter: |\n    ipadapter\n", "  model_patches: |\n", "  audio_encoders: |\n"} {
		if !contains(yaml, want) {
			t.Errorf("yaml lacks %q:\n%s", want, yaml)
		}
	}
	if contains(yaml, "  loras/wan:") {
		t.Error("a nested target_subdir became a folder key")
	}
}

var versionsSpecForTest = versions.Spec{VersionID: "t", Models: []versions.Model{
	{Source: "https://h/a.bin", TargetSubdir: "ipadapter"},
	{Source: "https://h/b.bin", TargetSubdir: "loras/wan"},
	{Source: "https://h/c.bin", TargetSubdir: "unet"},
}}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestDefaultTarget(t *testing.T) {
	if _, err := os.Stat("/runpod-volume"); err == nil {
		t.Skip("this machine has /runpod-volume")
	}
	home := testsupport.TempDir(t)
	t.Setenv("HOME", home)
	if got := DefaultTarget("wan22"); got != filepath.Join(home, "comfy-wan22") {
		t.Fatalf("DefaultTarget = %s", got)
	}
	t.Setenv("HOME", "")
	if got := DefaultTarget("wan22"); got != "comfy-wan22" {
		t.Fatalf("without HOME: %s", got)
	}
}
