package layers_test

import (
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// A node that declares its requirements only in pyproject.toml
// ([project].dependencies) gets them in the image's venv, as comfy-cli
// installs them.
func TestImageVenvHasPyprojectDependencies(t *testing.T) {
	v := testsupport.NewVersion(t)
	testsupport.BuildWheel(t, v.Wheels, testsupport.Wheel{Name: "delta", Version: "1.0"})
	v.Nodes["ComfyUI-KJNodes"].Commit("pyproject only", map[string]string{
		"requirements.txt": "",
		"pyproject.toml":   "[project]\nname = \"kjnodes\"\nversion = \"1.0\"\ndependencies = [\"delta>=1.0\", \"gamma\"]\n",
	})
	res := build(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), nil)
	fs := files(t, res.App)
	for _, want := range []string{
		"opt/comfy/.venv/lib/python3.11/site-packages/delta/__init__.py",
		"opt/comfy/.venv/bin/gamma-tool",
		"opt/comfy/custom_nodes/ComfyUI-KJNodes/pyproject.toml",
	} {
		if _, ok := fs[want]; !ok {
			t.Errorf("app image lacks %s", want)
		}
	}
}
