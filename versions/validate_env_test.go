package versions

import (
	"strings"
	"testing"
)

// A bad env key is named by its JSON path like every other spec error,
// whatever the keys around it (the schema library reports propertyNames
// errors at a reused location).
func TestBadEnvKeyNamesItsPath(t *testing.T) {
	for _, env := range []string{`{"1BAD": "x"}`, `{"OK": "1", "1BAD": "x", "ALSO_OK": "2"}`} {
		spec := `{"schema_version": 2, "version_id": "x", "comfy": {"repo": "https://h/r"},
		  "custom_nodes": [], "models": [], "env": ` + env + `}`
		_, err := Parse("env.json", []byte(spec), noEnv)
		if err == nil || !strings.Contains(err.Error(), `env.json: env["1BAD"]: expected an environment variable name`) {
			t.Errorf("env %s: %v", env, err)
		}
	}
}
