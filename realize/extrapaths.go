package realize

import (
	"fmt"
	"sort"
	"strings"

	"github.com/comfy-image/comfy-image/versions"
)

// ModelFolders are the model folders ComfyUI knows, each with the
// directories it is read from, canonical first. Where ComfyUI renamed a
// folder, the legacy directory is listed too (files in models/unet and
// models/clip still load); ComfyUI saves into the first directory of its
// effective list, which must be the canonical one.
var ModelFolders = map[string][]string{
	"audio_encoders":        {"audio_encoders"},
	"checkpoints":           {"checkpoints"},
	"classifiers":           {"classifiers"},
	"clip_vision":           {"clip_vision"},
	"configs":               {"configs"},
	"controlnet":            {"controlnet", "t2i_adapter"},
	"diffusers":             {"diffusers"},
	"diffusion_models":      {"diffusion_models", "unet"},
	"embeddings":            {"embeddings"},
	"gligen":                {"gligen"},
	"hypernetworks":         {"hypernetworks"},
	"latent_upscale_models": {"latent_upscale_models"},
	"loras":                 {"loras"},
	"model_patches":         {"model_patches"},
	"photomaker":            {"photomaker"},
	"style_models":          {"style_models"},
	"text_encoders":         {"text_encoders", "clip"},
	"upscale_models":        {"upscale_models"},
	"vae":                   {"vae"},
	"vae_approx":            {"vae_approx"},
}

// DownloadBaseKey is the yaml key ComfyUI-Manager reads (as
// folder_paths' "download_model_base") for where its model downloads go.
const DownloadBaseKey = "download_model_base"

// ExtraModelPaths renders extra_model_paths.yaml: one section whose
// base_path is the models folder, is_default so ComfyUI searches it first
// and saves there, and one key per folder, each value a block string with
// one directory per line (ComfyUI splits values on newlines; a YAML list
// would break it). A target_subdir of the spec outside the known folders
// gets its own key. download_model_base sends ComfyUI-Manager's downloads
// to the models folder too.
//
// ComfyUI's loader puts each path of an is_default section in front of the
// list as it reads it, so the last line of a value ends up first: the
// directories are written in reverse, canonical last.
func ExtraModelPaths(spec *versions.Spec, basePath string, opts ...YAMLOption) []byte {
	folders := map[string][]string{}
	for k, v := range ModelFolders {
		folders[k] = v
	}
	for _, o := range opts {
		o(folders)
	}
	known := map[string]bool{}
	for _, dirs := range ModelFolders {
		for _, d := range dirs {
			known[d] = true
		}
	}
	for _, m := range spec.Models {
		top := strings.SplitN(m.TargetSubdir, "/", 2)[0]
		if !known[top] {
			folders[top] = []string{top}
			known[top] = true
		}
	}
	folders[DownloadBaseKey] = []string{"."}
	keys := make([]string, 0, len(folders))
	for k := range folders {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by comfy-image for version %s; rewritten on every realize.\n", spec.VersionID)
	b.WriteString("# Each value lists directories under base_path, one per line. ComfyUI puts\n")
	b.WriteString("# each line of an is_default section first as it reads it, so the LAST line\n")
	b.WriteString("# of a value is searched first and is where ComfyUI saves.\n")
	b.WriteString("comfy_image:\n")
	fmt.Fprintf(&b, "  base_path: %s\n", yamlString(basePath))
	b.WriteString("  is_default: true\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: |\n", k)
		dirs := folders[k]
		for i := len(dirs) - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "    %s\n", dirs[i])
		}
	}
	return []byte(b.String())
}

// YAMLOption changes the folders ExtraModelPaths writes.
type YAMLOption func(folders map[string][]string)

// AlsoSearch adds directories searched after the models folder's own for
// key (absolute paths stay absolute: ComfyUI joins them to base_path).
func AlsoSearch(key string, dirs ...string) YAMLOption {
	return func(folders map[string][]string) {
		folders[key] = append(append([]string(nil), folders[key]...), dirs...)
	}
}

// yamlString quotes a scalar when YAML would read it as something else.
func yamlString(s string) string {
	if s == "" || strings.ContainsAny(s, ":#'\"{}[],&*?|<>=!%@`\n\\") || strings.TrimSpace(s) != s {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return s
}
