package testsupport

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// comfyPathsScript is a stdlib + PyYAML stand-in for where ComfyUI and its
// custom nodes look for models, written from ComfyUI's documented
// behaviour (folder_paths.py, utils/extra_config.py), not copied from it:
//   - models_dir is <real path of the folder of folder_paths.py>/models;
//   - the yaml's base_path is resolved from the yaml's folder, each value
//     split on newlines, legacy keys unet/clip mapped to their new names;
//   - with is_default each path goes in front of the list as it is read (or
//     moves there when already listed), else to the end.
//
// Then, for each name given, it lists the files a node finds the way
// ComfyUI_IPAdapter_plus does: registered[name] = the yaml's folders, or
// [models_dir/name] when the yaml has no such key; and direct[name] = the
// files under models_dir/name (its insightface loader reads that folder).
const comfyPathsScript = `import json, os, sys, yaml
comfy, conf_path, names = sys.argv[1], sys.argv[2], sys.argv[3:]
models_dir = os.path.join(os.path.dirname(os.path.realpath(os.path.join(comfy, "folder_paths.py"))), "models")
m = lambda *p: [os.path.join(models_dir, x) for x in p]
folders = {"checkpoints": m("checkpoints"), "configs": m("configs"), "loras": m("loras"), "vae": m("vae"),
    "text_encoders": m("text_encoders", "clip"), "diffusion_models": m("unet", "diffusion_models"),
    "controlnet": m("controlnet", "t2i_adapter"), "clip_vision": m("clip_vision")}
legacy = {"unet": "diffusion_models", "clip": "text_encoders"}
def add(name, path, is_default):
    name = legacy.get(name, name)
    if name not in folders:
        folders[name] = [path]
        return
    paths = folders[name]
    if path in paths:
        if is_default and paths[0] != path:
            paths.remove(path); paths.insert(0, path)
    elif is_default:
        paths.insert(0, path)
    else:
        paths.append(path)
yaml_dir = os.path.dirname(os.path.abspath(conf_path))
for section in (yaml.safe_load(open(conf_path)) or {}).values():
    if section is None:
        continue
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
def files(dirs):
    out = []
    for d in dirs:
        for root, _, fs in os.walk(d):
            out += sorted(os.path.relpath(os.path.join(root, f), d) for f in fs)
    return out
registered = {n: files(folders.get(n) or [os.path.join(models_dir, n)]) for n in names}
direct = {n: files([os.path.join(models_dir, n)]) for n in names}
json.dump({"models_dir": models_dir, "folders": folders, "registered": registered, "direct": direct}, sys.stdout)
`

// ComfyPaths is what ComfyUI would see: the ComfyUI folder comfyDir holds
// folder_paths.py, yamlFile is the extra_model_paths.yaml it is given.
type ComfyPaths struct {
	ModelsDir string              `json:"models_dir"`
	Folders   map[string][]string `json:"folders"`
	// Registered and Direct list, for each name asked, the files a node
	// finds through folder_names_and_paths (IPAdapter_plus's fallback to
	// models_dir/<name> included) and directly under models_dir/<name>.
	Registered map[string][]string `json:"registered"`
	Direct     map[string][]string `json:"direct"`
}

// LoadComfyPaths runs the stand-in with python3.
func LoadComfyPaths(t testing.TB, comfyDir, yamlFile string, names ...string) ComfyPaths {
	t.Helper()
	script := filepath.Join(t.TempDir(), "comfy_paths.py")
	if err := os.WriteFile(script, []byte(comfyPathsScript), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("python3", append([]string{script, comfyDir, yamlFile}, names...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("comfy paths stand-in: %v\n%s", err, stderr)
	}
	var res ComfyPaths
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("comfy paths stand-in output %s: %v", out, err)
	}
	return res
}
