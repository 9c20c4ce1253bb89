package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// A node with no requirements.txt gets its pyproject.toml
// [project].dependencies installed in the realized venv, through the same
// checks: a local path there is refused naming the node, file and line.
func TestRealizeInstallsPyprojectDependencies(t *testing.T) {
	s := newSite(t)
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "delta", Version: "1.0"})
	r := s.srv.NewRepo(t, "someone/Modern")
	r.Commit("init", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
		"pyproject.toml": "[project]\nname = \"modern\"\nversion = \"1.0\"\ndependencies = [\n  \"delta>=1.0\",\n]\n"})
	node := fmt.Sprintf(`, {"repo": %q}`, s.srv.RepoURL("someone/Modern"))
	s.writeSpec(t, node, "")
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	if got := deltaIn(t, target); got != "1.0" {
		t.Fatalf("delta %s in the venv, want 1.0 from pyproject.toml", got)
	}

	r.Commit("vendored", map[string]string{"pyproject.toml": "[project]\nname = \"modern\"\ndependencies = [\n  \"delta>=1.0\",\n  \"../../../host/pkg\",\n]\n"})
	if res := s.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	res := s.realize(t, filepath.Join(s.dir, "other"), "--skip-models")
	if res.Code != 2 || !strings.Contains(res.Stderr, "node Modern: pyproject.toml line 5: [project].dependencies[1]") || !strings.Contains(res.Stderr, "local path") {
		t.Fatalf("exit %d, want 2 naming the node, file and line\n%s", res.Code, res.Stderr)
	}
}
