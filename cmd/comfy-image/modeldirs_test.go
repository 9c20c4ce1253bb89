package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// folderPathsStandIn is the one line of ComfyUI's folder_paths.py that
// decides where nodes look (see design.md section 6): models_dir is the
// models folder next to the real path of folder_paths.py.
const folderPathsStandIn = "import os\nbase_path = os.path.dirname(os.path.realpath(__file__))\nmodels_dir = os.path.join(base_path, \"models\")\n"

// coreWithModelsFolder gives the site's core ComfyUI's models folder: a
// placeholder per folder and a shipped config, as ComfyUI's tree has.
func coreWithModelsFolder(t *testing.T, s *site) {
	t.Helper()
	s.core.Commit("models folder", map[string]string{
		"folder_paths.py":                          folderPathsStandIn,
		"models/checkpoints/put_checkpoints_here":  "placeholder\n",
		"models/diffusion_models/put_here":         "placeholder\n",
		"models/configs/v1-inference.yaml":         "model:\n  target: ldm\n",
		"models/vae_approx/put_taesd_encoder_here": "placeholder\n",
	})
	if res := s.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
}

// Issue 11, "Models where nodes look": a model in a shared MODELS_DIR is
// found by nodes that register their folder from folder_paths.models_dir
// (ComfyUI_IPAdapter_plus: models/ipadapter) or read it directly (its
// insightface loader), though the spec lists no model there. ComfyUI's own
// files of its models folder are kept (placed in MODELS_DIR), never over a
// user's file.
func TestNodesSeeEveryModelOfASharedModelsDir(t *testing.T) {
	s := newSite(t)
	coreWithModelsFolder(t, s)
	shared := filepath.Join(s.dir, "shared", "models")
	for p, content := range map[string]string{
		"ipadapter/ip-adapter_sd15.safetensors":     "ipa",
		"insightface/models/buffalo_l/det_10g.onnx": "onnx",
		"checkpoints/put_checkpoints_here":          "the user's own file",
		"diffusion_models/wan2.2_t2v.safetensors":   "unet",
		"loras/style.safetensors":                   "lora",
	} {
		writeTestFile(t, filepath.Join(shared, p), content)
	}
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target, "--models-dir", shared, "--skip-models"); res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	got := testsupport.LoadComfyPaths(t, filepath.Join(target, "ComfyUI"), filepath.Join(target, "extra_model_paths.yaml"), "ipadapter", "insightface", "checkpoints", "configs", "loras")
	if real, _ := filepath.EvalSymlinks(got.ModelsDir); real != shared {
		t.Errorf("folder_paths.models_dir %s resolves to %s, want the shared models folder %s", got.ModelsDir, real, shared)
	}
	if want := []string{"ip-adapter_sd15.safetensors"}; !slices.Equal(got.Registered["ipadapter"], want) {
		t.Errorf("IPAdapter_plus's ipadapter folder (models_dir/ipadapter) lists %v, want %v", got.Registered["ipadapter"], want)
	}
	if want := []string{"models/buffalo_l/det_10g.onnx"}; !slices.Equal(got.Direct["insightface"], want) {
		t.Errorf("models_dir/insightface lists %v, want %v", got.Direct["insightface"], want)
	}
	if !slices.Contains(got.Registered["configs"], "v1-inference.yaml") {
		t.Errorf("ComfyUI's own configs/v1-inference.yaml lost: configs lists %v", got.Registered["configs"])
	}
	if data, _ := os.ReadFile(filepath.Join(shared, "checkpoints", "put_checkpoints_here")); string(data) != "the user's own file" {
		t.Errorf("the user's file in MODELS_DIR was overwritten: %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(shared, "vae_approx", "put_taesd_encoder_here")); string(data) != "placeholder\n" {
		t.Errorf("ComfyUI's placeholder not placed in MODELS_DIR: %q", data)
	}
	if first := got.Folders["diffusion_models"][0]; first != filepath.Join(shared, "diffusion_models") {
		t.Errorf("diffusion_models searched first in %s, want the shared canonical folder", first)
	}
	if link, err := os.Readlink(filepath.Join(target, "ComfyUI", "models")); err != nil || link != shared {
		t.Errorf("ComfyUI/models is %q (%v), want a link to %s", link, err, shared)
	}

	// A rerun changes nothing; a model added to MODELS_DIR later is seen
	// without a realize.
	if res := s.realize(t, target, "--models-dir", shared, "--skip-models"); res.Code != 0 || !strings.Contains(res.Stdout+res.Stderr, "unchanged") {
		t.Fatalf("rerun exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	writeTestFile(t, filepath.Join(shared, "ipadapter", "ip-adapter-faceid_sd15.bin"), "faceid")
	got = testsupport.LoadComfyPaths(t, filepath.Join(target, "ComfyUI"), filepath.Join(target, "extra_model_paths.yaml"), "ipadapter")
	if len(got.Registered["ipadapter"]) != 2 {
		t.Errorf("a model added later: ipadapter lists %v", got.Registered["ipadapter"])
	}
}

// With the default MODELS_DIR (<target>/models) the link is relative, so
// the target works wherever it is mounted; a target realized before the
// link (ComfyUI/models a folder of ComfyUI's files) is converted, and a
// user's model left in ComfyUI/models stops the run, naming it.
func TestCoreModelsFolderIsARelativeLinkAndOldTargetsConvert(t *testing.T) {
	s := newSite(t)
	coreWithModelsFolder(t, s)
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	if link, _ := os.Readlink(filepath.Join(target, "ComfyUI", "models")); link != filepath.Join("..", "models") {
		t.Fatalf("ComfyUI/models -> %q, want ../models", link)
	}
	moved := filepath.Join(s.dir, "moved")
	if err := os.Rename(target, moved); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(moved, "models", "ipadapter", "a.bin"), "x")
	got := testsupport.LoadComfyPaths(t, filepath.Join(moved, "ComfyUI"), filepath.Join(moved, "extra_model_paths.yaml"), "ipadapter", "configs")
	if !slices.Equal(got.Registered["ipadapter"], []string{"a.bin"}) || !slices.Contains(got.Registered["configs"], "v1-inference.yaml") {
		t.Fatalf("moved target: ipadapter %v configs %v", got.Registered["ipadapter"], got.Registered["configs"])
	}

	// An old layout: ComfyUI/models a real folder holding the core's files
	// (as a checkout wrote them) and a user's model.
	link := filepath.Join(moved, "ComfyUI", "models")
	os.Remove(link)
	writeTestFile(t, filepath.Join(link, "checkpoints", "put_checkpoints_here"), "placeholder\n")
	writeTestFile(t, filepath.Join(link, "loras", "mine.safetensors"), "a user's lora")
	res := s.realize(t, moved, "--skip-models")
	if res.Code != 2 || !strings.Contains(res.Stderr, "loras/mine.safetensors") || !strings.Contains(res.Stderr, "move them there") {
		t.Fatalf("a user's model in ComfyUI/models: exit %d, want 2 naming it\n%s", res.Code, res.Stderr)
	}
	os.MkdirAll(filepath.Join(moved, "models", "loras"), 0o755)
	if err := os.Rename(filepath.Join(link, "loras", "mine.safetensors"), filepath.Join(moved, "models", "loras", "mine.safetensors")); err != nil {
		t.Fatal(err)
	}
	if res := s.realize(t, moved, "--skip-models"); res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	if l, _ := os.Readlink(link); l != filepath.Join("..", "models") {
		t.Fatalf("ComfyUI/models -> %q after moving the user's file away", l)
	}
}

func writeTestFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
