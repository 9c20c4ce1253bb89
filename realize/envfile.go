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
	b.WriteString("# Runtime environment of this version, sourced by run.sh.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(spec.Env[k], "'", `'\''`))
	}
	return []byte(b.String())
}
