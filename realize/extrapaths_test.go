package realize

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/comfy-image/comfy-image/versions"
)

// comfyLoader is a stdlib + PyYAML stand-in for how ComfyUI reads an
// extra_model_paths.yaml (utils/extra_config.py with folder_paths'
// add_model_folder_path), written from its documented behaviour: base_path
// relative to the yaml's folder, each value split on newlines, legacy keys
// unet/clip mapped to their new names, and with is_default each path put in
// front of the list as it is read (or moved there when already listed).
// ComfyUI's own defaults come first, from models_dir = <real path of the
// folder of folder_paths.py>/models. It prints the effective list per key.
const comfyLoader = `import json, os, sys, yaml
comfy, conf_path = sys.argv[1], sys.argv[2]
models_dir = os.path.join(os.path.dirname(os.path.realpath(os.path.join(comfy, "folder_paths.py"))), "models")
m = lambda *p: [os.path.join(models_dir, x) for x in p]
folders = {"checkpoints": m("checkpoints"), "loras": m("loras"), "vae": m("vae"),
    "text_encoders": m("text_encoders", "clip"), "diffusion_models": m("unet", "diffusion_models"),
    "controlnet": m("controlnet", "t2i_adapter"), "clip_vision": m("clip_vision")}
legacy = {"unet": "diffusion_models", "clip": "text_encoders"}
def add(name, path, is_default):
    name = legacy.get(name, name)
    paths = folders.setdefault(name, [])
    if path in paths:
        if is_default and paths[0] != path:
            paths.remove(path); paths.insert(0, path)
    elif is_default:
        paths.insert(0, path)
    else:
        paths.append(path)
yaml_dir = os.path.dirname(os.path.abspath(conf_path))
for section in yaml.safe_load(open(conf_path)).values():
    base = section.pop("base_path", None)
    if base is not None:
        base = os.path.expandvars(os.path.expanduser(base))
        if not os.path.isabs(base):
            base = os.path.abspath(os.path.join(yaml_dir, base))
    is_default = section.pop("is_default", False)
    for key, value in section.items():
        for line in value.split("\n"):
            if line:
                add(key, os.path.normpath(os.path.join(base, line) if base else os.path.join(yaml_dir, line)), is_default)
json.dump({"models_dir": models_dir, "folders": folders}, sys.stdout)
`

// ComfyLoad writes the yaml and runs the loader stand-in on it; comfyDir
// holds a folder_paths.py (or a link to one).
func comfyLoad(t *testing.T, yamlFile, comfyDir string) (modelsDir string, folders map[string][]string) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "load.py")
	if err := os.WriteFile(script, []byte(comfyLoader), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("python3", script, comfyDir, yamlFile).Output()
	if err != nil {
		t.Fatalf("loader: %v %s", err, out)
	}
	var res struct {
		ModelsDir string              `json:"models_dir"`
		Folders   map[string][]string `json:"folders"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("loader output %s: %v", out, err)
	}
	return res.ModelsDir, res.Folders
}

// Savers write to the first folder of ComfyUI's effective list, so the
// canonical folder under MODELS_DIR must come first for every key, and
// ComfyUI-Manager's download base must be MODELS_DIR.
func TestExtraModelPathsCanonicalFolderFirst(t *testing.T) {
	dir := t.TempDir()
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
			_, folders := comfyLoad(t, yamlFile, comfy)
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
