package versions

import (
	"strings"
	"testing"
)

func TestRegistryNodes(t *testing.T) {
	const head = `{"schema_version": 2, "version_id": "v", "comfy": {"repo": "https://github.com/comfyanonymous/ComfyUI"}, "custom_nodes": [`
	s, err := Parse("s.json", []byte(head+`{"registry": "comfyui-impact-pack", "version": "8.8.1"}, {"registry": "rgthree-comfy", "name": "rgthree"}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CustomNodes[0]; n.Name != "comfyui-impact-pack" || n.Registry != "comfyui-impact-pack" || n.Version != "8.8.1" {
		t.Errorf("node %+v", n)
	}
	if n := s.CustomNodes[1]; n.Name != "rgthree" || n.Version != "" {
		t.Errorf("node %+v", n)
	}
	for nodes, want := range map[string]string{
		`{"registry": "x", "repo": "https://github.com/a/b"}`:    "custom_nodes[0]: a node is a git repo (repo, ref, commit) or a registry node (registry, version), not both",
		`{"repo": "https://github.com/a/b", "version": "1.0.0"}`: "custom_nodes[0].version: version belongs to a registry node",
		`{"name": "x"}`:                          "custom_nodes[0].repo: missing; expected repo (a git URL) or registry (a Comfy Registry node id)",
		`{"registry": "x", "version": "latest"}`: "custom_nodes[0].version: expected a version x.y.z",
		`{"registry": "../x"}`:                   "custom_nodes[0].registry: expected a Comfy Registry node id",
	} {
		_, err := Parse("s.json", []byte(head+nodes+`]}`), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", nodes, err, want)
		}
	}
}
