package main

import (
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// A node whose HTTP repository is not there fails the lock with exit 2
// (the spec's fault), saying the repository was not found (HTTP 404) at
// its URL, without the URL's token.
func TestMissingRepoIsBadInput(t *testing.T) {
	const token = "ghp_MISSINGSENTINEL0123456789"
	p := newProject(t)
	srv := testsupport.NewGitServer(t)
	url := strings.Replace(srv.RepoURL("org/NoSuchNode"), "http://", "http://x-access-token:${NODE_TOKEN}@", 1)
	p.writeSpec(t, `, {"repo": "`+url+`", "name": "NoSuchNode"}`)
	res := testsupport.Run(t, p.dir, []string{"COMFY_CACHE=" + p.cache, "NODE_TOKEN=" + token}, "lock", "--version-id", "demo")
	want := "repo " + srv.RepoURL("org/NoSuchNode") + ": list refs: repository not found (HTTP 404)"
	if res.Code != 2 || !strings.Contains(res.Stderr, want) || strings.Contains(res.Stdout+res.Stderr, token) {
		t.Fatalf("exit %d, want 2 with %q and no token:\n%s", res.Code, want, res.Stderr)
	}
}
