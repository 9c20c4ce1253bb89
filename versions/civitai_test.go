package versions

import (
	"errors"
	"strings"
	"testing"
)

func TestCivitaiSources(t *testing.T) {
	const head = `{"schema_version": 2, "version_id": "v", "comfy": {"repo": "https://github.com/comfyanonymous/ComfyUI"}, "models": [`
	ok := map[string]string{
		`{"source": "civitai://128713", "name": "dreamshaper_8.safetensors"}`:                                              "checkpoints/dreamshaper_8.safetensors",
		`{"source": "https://civitai.com/api/download/models/128713", "name": "ds.safetensors", "target_subdir": "loras"}`: "loras/ds.safetensors",
	}
	for model, dest := range ok {
		s, err := Parse("s.json", []byte(head+model+`]}`), nil)
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		src, _ := ParseSource(s.Models[0].Source)
		if s.Models[0].Dest() != dest || src.Scheme != "civitai" || src.ModelVersionID != "128713" {
			t.Errorf("%s: dest %s, source %+v", model, s.Models[0].Dest(), src)
		}
	}
	bad := map[string]string{
		`{"source": "civitai://128713"}`:                                                                         `models[0].name: a Civitai source names no file`,
		`{"source": "civitai://dreamshaper", "name": "x.safetensors"}`:                                           `models[0].source: "civitai://dreamshaper": expected civitai://<model-version-id>`,
		`{"source": "civitai://12?token=x", "name": "x.safetensors"}`:                                            `expected civitai://<model-version-id>`,
		`{"source": "https://civitai.com/api/download/models/12?type=Model&token=abc", "name": "x.safetensors"}`: `the token in CIVITAI_API_TOKEN`,
	}
	for model, want := range bad {
		_, err := Parse("s.json", []byte(head+model+`]}`), nil)
		var se *SpecError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", model, err, want)
		}
	}
	// Other civitai.com pages are plain URLs.
	if src, err := ParseSource("https://civitai.com/models/4384/dreamshaper"); err != nil || src.Scheme != "https" {
		t.Errorf("model page: %+v %v", src, err)
	}
}
