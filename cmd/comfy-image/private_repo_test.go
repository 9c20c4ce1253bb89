package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// Issue 11: a private node named as https://x-access-token:${VAR}@host/...
// locks with the token from the environment; the token is in no output and
// no file, and a refused token names the variable to set (exit 1).
func TestPrivateRepoTokenFromEnvironment(t *testing.T) {
	const token = "ghp_ENVSENTINEL0123456789"
	p := newProject(t)
	private := testsupport.NewGitServer(t)
	private.RequireBasicAuth("x-access-token", token)
	r := private.NewRepo(t, "org/PrivateNode")
	r.Commit("init", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"})
	url := strings.Replace(private.RepoURL("org/PrivateNode"), "http://", "http://x-access-token:${PRIVATE_NODE_TOKEN}@", 1)
	p.writeSpec(t, `, {"repo": "`+url+`", "name": "PrivateNode"}`)

	res := testsupport.Run(t, p.dir, []string{"COMFY_CACHE=" + p.cache, "PRIVATE_NODE_TOKEN=ghp_wrong"}, "lock", "--version-id", "demo")
	if res.Code != 1 || !strings.Contains(res.Stderr, "set PRIVATE_NODE_TOKEN") || strings.Contains(res.Stderr, "ghp_wrong") {
		t.Fatalf("wrong token: exit %d, want 1 naming the variable and not the token:\n%s", res.Code, res.Stderr)
	}
	res = testsupport.Run(t, p.dir, []string{"COMFY_CACHE=" + p.cache, "PRIVATE_NODE_TOKEN=" + token}, "lock", "--version-id", "demo")
	if res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	if strings.Contains(res.Stdout+res.Stderr, token) {
		t.Fatalf("the token is in the output:\n%s%s", res.Stdout, res.Stderr)
	}
	if got := p.lock(t).CustomNodes[2].Repo; got != private.RepoURL("org/PrivateNode") {
		t.Fatalf("locked repo %q, want the URL without credentials", got)
	}
	filepath.WalkDir(p.cache, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if data, _ := os.ReadFile(path); bytes.Contains(data, []byte(token)) {
			t.Errorf("%s holds the token", path)
		}
		return nil
	})
}
