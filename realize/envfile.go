package realize

import (
	"fmt"
	"sort"
	"strings"

	"github.com/comfy-image/comfy-image/versions"
)

// EnvFile holds the spec's literal env values (runtime configuration);
// values from the caller's environment are secrets and never written.
func EnvFile(spec *versions.Spec, lookupEnv func(string) (string, bool)) []byte {
	_, secret := spec.ResolveEnv(lookupEnv)
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		if !secret[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	// Both starters source it before ComfyUI: run.sh of a realized target
	// (runScript) and entrypoint.sh of an image (layers/worker).
	b.WriteString("# Runtime environment of this version, sourced by run.sh (realized target) and entrypoint.sh (image).\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(spec.Env[k], "'", `'\''`))
	}
	return []byte(b.String())
}
