package pyenv

import (
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"os"
	"path/filepath"
	"testing"
)

func TestBasePackageNamesCannotBecomePaths(t *testing.T) {
	for _, meta := range []string{
		"Name: ../../etc\nVersion: 1.0\n",
		"Name: torch\nVersion: 1.0/../../x\n",
		"Name: -r\nVersion: 1.0\n",
		"Version: 1.0\n",
	} {
		if p, ok := ParseBasePackage("dist-info", meta, ""); ok {
			t.Errorf("metadata %q accepted as %+v", meta, p)
		}
	}
	p, ok := ParseBasePackage("egg-info", "Metadata-Version: 1.2\nName: Torch_Vision\nVersion: 0.21.0+cu124\n", "torch==2.6.0\n")
	if !ok || p.Name != "torch-vision" || p.Version != "0.21.0+cu124" {
		t.Fatalf("got %+v %v", p, ok)
	}
	dir := testsupport.TempDir(t)
	if err := writeBaseSite(dir, []BasePackage{p}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "torch_vision-0.21.0+cu124.egg-info", "requires.txt"))
	if err != nil || string(got) != "torch==2.6.0\n" {
		t.Errorf("requires.txt %q %v", got, err)
	}
}
