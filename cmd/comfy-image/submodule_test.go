package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// Issue 11: a node whose submodule points at the machine's files (file://
// under an http remote) is bad input: exit 2, naming the node, the path
// and the URL.
func TestRefusedSubmoduleExitsTwo(t *testing.T) {
	p := newProject(t)
	local := testsupport.NewRepo(t, filepath.Join(t.TempDir(), "private"))
	local.Commit("secret", map[string]string{"secret.txt": "host secret\n"})
	evil := p.srv.NewRepo(t, "org/evil")
	evil.Commit("node", map[string]string{"__init__.py": "\n"})
	evil.SubmoduleAdd(local.FileURL(), "repositories/lib")
	evil.Commit("file submodule", nil)
	p.writeSpec(t, `, {"repo": "`+p.srv.RepoURL("org/evil")+`", "name": "evil"}`)
	res := p.run(t, "lock", "--version-id", "demo")
	if res.Code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", res.Code, res.Stderr)
	}
	for _, want := range []string{"custom_nodes[2] (evil)", "repositories/lib", local.FileURL()} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr does not name %q:\n%s", want, res.Stderr)
		}
	}
}
