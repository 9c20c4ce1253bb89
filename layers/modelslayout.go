package layers

import (
	"path"
	"strings"

	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/realize"
)

// The models layout of the app image, as on disk (see realize.CoreModelsDir):
// /opt/comfy/ComfyUI/models -> ../models -> /models, so every model in the
// models folder is where nodes look (folder_paths.models_dir), whatever the
// spec lists. /opt/comfy/models is the one link an entry point re-points
// when it picks another models folder at start. ComfyUI's own files of its
// models folder (placeholders, configs/*.yaml) are kept byte for byte in
// /opt/comfy/comfyui-models, whose configs the yaml searches after the
// models folder's.
var (
	modelsLink     = path.Join(Root, "models")
	coreModelsLink = path.Join(Root, "ComfyUI", realize.CoreModelsDir)
	coreModelFiles = path.Join(Root, "comfyui-models")
)

// layCoreModels moves the core's files of ComfyUI/models aside and adds the
// two links, in the core's layer.
func layCoreModels(entries []materialize.Entry) []materialize.Entry {
	out := make([]materialize.Entry, 0, len(entries)+2)
	for _, e := range entries {
		if rel, ok := strings.CutPrefix(e.Path, coreModelsLink+"/"); ok {
			e.Path = path.Join(coreModelFiles, rel)
		} else if e.Path == coreModelsLink {
			continue // a core whose models is not a folder: the link wins
		}
		out = append(out, e)
	}
	return append(out,
		materialize.Entry{Path: coreModelsLink, Link: path.Join("..", path.Base(modelsLink))},
		materialize.Entry{Path: modelsLink, Link: ModelsDir},
	)
}

// yamlOptions add ComfyUI's own configs to the image's yaml.
func yamlOptions() []realize.YAMLOption {
	return []realize.YAMLOption{realize.AlsoSearch("configs", "/"+path.Join(coreModelFiles, "configs"))}
}
