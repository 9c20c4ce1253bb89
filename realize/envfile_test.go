package realize

import (
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/layers/worker"
	"github.com/comfy-image/comfy-image/versions"
)

// TestEnvFileSaysWhoReadsIt: comfy.env's header names the scripts that
// source it (a realized target's run.sh, an image's entrypoint.sh), and
// both do; a secret from the caller's environment is not written.
func TestEnvFileSaysWhoReadsIt(t *testing.T) {
	spec := &versions.Spec{VersionID: "t", Env: map[string]string{"MODE": "it's fast", "HF_TOKEN": "${HF_TOKEN}"}}
	lookup := func(k string) (string, bool) {
		if k == "HF_TOKEN" {
			return "hf_secret", true
		}
		return "", false
	}
	env := string(EnvFile(spec, lookup))
	header, _, _ := strings.Cut(env, "\n")
	for _, reader := range []string{"run.sh", "entrypoint.sh"} {
		if !strings.Contains(header, reader) {
			t.Errorf("comfy.env's header %q does not name %s, which sources it", header, reader)
		}
	}
	if !strings.Contains(string(runScript("t")), ". ./comfy.env") || !strings.Contains(string(worker.EntryScript), `. "$root/comfy.env"`) {
		t.Errorf("run.sh or entrypoint.sh no longer sources comfy.env; fix the header")
	}
	if !strings.Contains(env, `export MODE='it'\''s fast'`) || strings.Contains(env, "hf_secret") {
		t.Errorf("comfy.env:\n%s", env)
	}
}
