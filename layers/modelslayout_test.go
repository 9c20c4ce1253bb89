package layers_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// In the app image ComfyUI/models is a link to the models folder, so a node
// looking under folder_paths.models_dir (IPAdapter_plus's ipadapter,
// insightface) finds every model mounted at /models, listed in the spec or
// not; ComfyUI's own files of that folder stay in the image and its
// configs are still searched.
func TestImageModelsFolderIsWhereNodesLook(t *testing.T) {
	v := testsupport.NewVersion(t)
	v.Core.Commit("models folder", map[string]string{
		"folder_paths.py":                         "import os\nbase_path = os.path.dirname(os.path.realpath(__file__))\nmodels_dir = os.path.join(base_path, \"models\")\n",
		"models/checkpoints/put_checkpoints_here": "placeholder\n",
		"models/configs/v1-inference.yaml":        "model: ldm\n",
	})
	res := build(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), nil)
	fs := files(t, res.App)
	if got := fs["opt/comfy/ComfyUI/models"]; got != "-> ../models" {
		t.Errorf("ComfyUI/models is %q, want a link to ../models", got)
	}
	if got := fs["opt/comfy/models"]; got != "-> /models" {
		t.Errorf("/opt/comfy/models is %q, want a link to /models", got)
	}
	for p := range fs {
		if strings.HasPrefix(p, "opt/comfy/ComfyUI/models/") {
			t.Errorf("%s is in the image under the link", p)
		}
	}
	if fs["opt/comfy/comfyui-models/configs/v1-inference.yaml"] != "model: ldm\n" {
		t.Error("ComfyUI's own configs/v1-inference.yaml is not kept in the image")
	}

	// Run the loader stand-in over the image's files as the container sees
	// them: the image unpacked under root, absolute links and paths taken
	// from root (what the container's / is), the models image at /models
	// with files the spec does not list, and the yaml's base_path set to
	// /models as the entry point writes it.
	root := testsupport.TempDir(t)
	for p, content := range fs {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if link, ok := strings.CutPrefix(content, "-> "); ok {
			if filepath.IsAbs(link) {
				link = filepath.Join(root, link)
			}
			if err := os.Symlink(link, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		os.WriteFile(full, []byte(content), 0o644)
	}
	for p, content := range files(t, res.Models) {
		writeFile(t, filepath.Join(root, "models", p), content)
	}
	writeFile(t, filepath.Join(root, "models", "ipadapter", "ip-adapter_sd15.safetensors"), "ipa")
	writeFile(t, filepath.Join(root, "models", "insightface", "models", "buffalo_l", "det_10g.onnx"), "onnx")
	yaml := fs["opt/comfy/extra_model_paths.yaml"]
	yaml = regexp.MustCompile(`(?m)^  base_path: .*$`).ReplaceAllString(yaml, "  base_path: "+filepath.Join(root, "models"))
	yaml = regexp.MustCompile(`(?m)^    /`).ReplaceAllString(yaml, "    "+root+"/")
	yamlFile := filepath.Join(testsupport.TempDir(t), "extra_model_paths.yaml")
	writeFile(t, yamlFile, yaml)

	got := testsupport.LoadComfyPaths(t, filepath.Join(root, "opt", "comfy", "ComfyUI"), yamlFile, "ipadapter", "insightface", "configs", "diffusion_models")
	if real, _ := filepath.EvalSymlinks(got.ModelsDir); real != filepath.Join(root, "models") {
		t.Errorf("models_dir %s resolves to %s, want /models", got.ModelsDir, real)
	}
	if !slices.Equal(got.Registered["ipadapter"], []string{"ip-adapter_sd15.safetensors"}) {
		t.Errorf("ipadapter (models_dir/ipadapter) lists %v", got.Registered["ipadapter"])
	}
	if !slices.Equal(got.Direct["insightface"], []string{"models/buffalo_l/det_10g.onnx"}) {
		t.Errorf("models_dir/insightface lists %v", got.Direct["insightface"])
	}
	if !slices.Contains(got.Registered["configs"], "v1-inference.yaml") {
		t.Errorf("configs lists %v, want ComfyUI's v1-inference.yaml", got.Registered["configs"])
	}
	if first := got.Folders["diffusion_models"][0]; first != filepath.Join(root, "models", "diffusion_models") {
		t.Errorf("diffusion_models searched first in %s", first)
	}
	if first := got.Folders["configs"][0]; first != filepath.Join(root, "models", "configs") {
		t.Errorf("configs saved to %s, want the models folder's", first)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
