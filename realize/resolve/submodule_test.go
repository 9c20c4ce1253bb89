package resolve_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/checkout"
	"github.com/comfy-image/comfy-image/versions"
)

// The lock records each submodule's path, URL and gitlink commit; a
// submodule that cannot be fetched fails the lock naming the node, the
// path and the URL.
func TestLockRecordsSubmodulesAndNamesUnreachableOnes(t *testing.T) {
	srv := testsupport.NewGitServer(t)
	core := srv.NewRepo(t, "comfyanonymous/ComfyUI")
	core.Commit("core", map[string]string{"main.py": "print('comfy')\n"})
	lib := srv.NewRepo(t, "org/lib")
	libCommit := lib.Commit("lib", map[string]string{"lib.py": "X = 1\n"})
	node := srv.NewRepo(t, "org/node")
	node.Commit("node", map[string]string{"__init__.py": "\n"})
	node.SubmoduleAdd(srv.RepoURL("org/lib"), "repositories/lib")
	// The URL git recorded is absolute; make it relative, as real nodes do.
	node.Git("config", "-f", ".gitmodules", "submodule.repositories/lib.url", "../lib")
	node.Commit("with lib", nil)
	spec := parseSpec(t, fmt.Sprintf(`{"schema_version": 2, "version_id": "demo", "comfy": {"repo": %q},
	  "custom_nodes": [{"repo": %q, "name": "usdu"}]}`, srv.RepoURL("comfyanonymous/ComfyUI"), srv.RepoURL("org/node")))
	cacheDir := testsupport.TempDir(t)
	l, err := resolveIn(spec, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	want := []versions.LockedSubmodule{{Path: "repositories/lib", URL: srv.RepoURL("org/lib"), Commit: libCommit}}
	if got := l.CustomNodes[0].Submodules; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lock submodules %v, want %v", got, want)
	}
	mirror, _ := checkout.NewGitCache(cacheDir, false, nil).MirrorPath(srv.RepoURL("org/lib"))
	if _, err := os.Stat(mirror); err != nil {
		t.Fatalf("the submodule has no mirror of its own in the cache: %v", err)
	}

	// The submodule's repository goes away: the lock fails, naming all.
	os.RemoveAll(lib.Dir)
	_, err = resolveIn(spec, testsupport.TempDir(t))
	var se *checkout.SubmoduleError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *SubmoduleError", err)
	}
	for _, part := range []string{"custom_nodes[0] (usdu)", "repositories/lib", srv.RepoURL("org/lib")} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %q", err, part)
		}
	}
}

func parseSpec(t *testing.T, text string) *versions.Spec {
	t.Helper()
	s, err := versions.Parse("demo.json", []byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return s
}
