package realize

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/versions"
)

// Savers write to the first folder of ComfyUI's effective list, so the
// canonical folder under MODELS_DIR must come first for every key, and
// ComfyUI-Manager's download base must be MODELS_DIR.
func TestExtraModelPathsCanonicalFolderFirst(t *testing.T) {
	dir := testsupport.TempDir(t)
	comfy := filepath.Join(dir, "ComfyUI")
	os.MkdirAll(comfy, 0o755)
	os.WriteFile(filepath.Join(comfy, "folder_paths.py"), nil, 0o644)
	spec := &versions.Spec{VersionID: "t", Models: []versions.Model{{Source: "https://h/a.bin", TargetSubdir: "ipadapter"}}}
	for name, base := range map[string]string{"relative": "models", "absolute": filepath.Join(dir, "shared", "models")} {
		t.Run(name, func(t *testing.T) {
			yamlFile := filepath.Join(dir, "extra_model_paths.yaml")
			if err := os.WriteFile(yamlFile, ExtraModelPaths(spec, base), 0o644); err != nil {
				t.Fatal(err)
			}
			folders := testsupport.LoadComfyPaths(t, comfy, yamlFile).Folders
			modelsDir := base
			if !filepath.IsAbs(base) {
				modelsDir = filepath.Join(dir, base)
			}
			for key, first := range map[string]string{
				"diffusion_models": "diffusion_models", "text_encoders": "text_encoders", "controlnet": "controlnet",
				"checkpoints": "checkpoints", "loras": "loras", "ipadapter": "ipadapter", "model_patches": "model_patches",
			} {
				if got := folders[key]; len(got) == 0 || got[0] != filepath.Join(modelsDir, first) {
					t.Errorf("%s: effective list %v, want %s first", key, got, filepath.Join(modelsDir, first))
				}
			}
			// The legacy folders are still searched, after the canonical one.
			if got := folders["diffusion_models"]; len(got) < 2 || got[1] != filepath.Join(modelsDir, "unet") {
				t.Errorf("diffusion_models: %v, want MODELS_DIR/unet second", got)
			}
			if got := folders[DownloadBaseKey]; len(got) != 1 || got[0] != modelsDir {
				t.Errorf("download_model_base: %v, want [%s]", got, modelsDir)
			}
		})
	}
}
