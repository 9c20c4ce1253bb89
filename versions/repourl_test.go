package versions

import (
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/repourl"
)

// A repo URL may take its token from the environment; the spec accepts it,
// warns when the variable is unset, and nothing shown keeps the reference.
func TestRepoURLWithTokenVariable(t *testing.T) {
	const repo = "https://x-access-token:${GH_TOKEN}@github.com/org/private"
	spec := `{"schema_version": 2, "version_id": "v", "comfy": {"repo": "https://github.com/comfyanonymous/ComfyUI"},
	  "custom_nodes": [{"repo": "` + repo + `"}, {"repo": "git@github.com:org/other.git", "submodules": false}]}`
	s, err := Parse("v.json", []byte(spec), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if s.CustomNodes[0].Name != "private" || s.CustomNodes[1].WantsSubmodules() || !s.CustomNodes[0].WantsSubmodules() {
		t.Fatalf("nodes %+v", s.CustomNodes)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "custom_nodes[0].repo") || !strings.Contains(s.Warnings[0], "${GH_TOKEN}") {
		t.Fatalf("warnings %q, want one naming custom_nodes[0].repo and ${GH_TOKEN}", s.Warnings)
	}
	if got := repourl.Redact(repo); got != "https://github.com/org/private" {
		t.Fatalf("RedactURL = %q", got)
	}
	u, _ := repourl.Parse(repo)
	user, pass, err := repourl.ExpandUserinfo(u, func(k string) (string, bool) { return "tok-" + k, true })
	if err != nil || user != "x-access-token" || pass != "tok-GH_TOKEN" {
		t.Fatalf("ExpandUserinfo = %q, %q, %v", user, pass, err)
	}
}

func TestRepoURLCredentialsOnlyOverHTTPSOrSSH(t *testing.T) {
	for _, repo := range []string{"file://user:${T}@/srv/x", "git://u:${T}@host/org/repo"} {
		if msg := CheckRepoURL(repo); !strings.Contains(msg, "credentials") || strings.Contains(msg, "${T}") {
			t.Errorf("CheckRepoURL(%q) = %q", repo, msg)
		}
	}
}

func TestSubmodulesOnARegistryNodeIsRefused(t *testing.T) {
	spec := `{"schema_version": 2, "version_id": "v", "comfy": {"repo": "https://github.com/comfyanonymous/ComfyUI"},
	  "custom_nodes": [{"registry": "comfyui-kjnodes", "submodules": false}]}`
	_, err := Parse("v.json", []byte(spec), nil)
	if err == nil || !strings.Contains(err.Error(), "custom_nodes[0].submodules") {
		t.Fatalf("got %v", err)
	}
}
