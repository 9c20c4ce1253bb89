package versions

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/internal/testsupport"
)

const validSpec = `{
  "schema_version": 2,
  "version_id": "v1",
  "comfy": {"repo": "https://github.com/comfyanonymous/ComfyUI", "ref": "master"},
  "custom_nodes": [
    {"repo": "https://github.com/city96/ComfyUI-GGUF", "name": "gguf"},
    {"repo": "https://github.com/kijai/ComfyUI-KJNodes.git"}
  ],
  "models": [
    {"source": "hf://owner/repo/split/unet.safetensors@abc", "name": "unet", "target_subdir": "diffusion_models"},
    {"source": "https://example.com/files/vae.safetensors"}
  ],
  "env": {"HF_TOKEN": "${HF_TOKEN}", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},
  "options": {"offline": false, "skip_models": true}
}`

func noEnv(string) (string, bool) { return "", false }

func TestParseValidAppliesDefaults(t *testing.T) {
	s, err := Parse("v1.json", []byte(validSpec), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CustomNodes[1].Name; got != "ComfyUI-KJNodes" {
		t.Errorf("default node name = %q", got)
	}
	if got := s.Models[1].Dest(); got != "checkpoints/vae.safetensors" {
		t.Errorf("default model dest = %q", got)
	}
	if got := s.Models[0].Dest(); got != "diffusion_models/unet.safetensors" {
		t.Errorf("model dest = %q", got)
	}
	if !s.Options.SkipModels {
		t.Error("options.skip_models lost")
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "${HF_TOKEN}") || !strings.Contains(s.Warnings[0], "env.HF_TOKEN") {
		t.Errorf("warnings = %q, want one naming HF_TOKEN", s.Warnings)
	}
	withToken, _ := Parse("v1.json", []byte(validSpec), func(k string) (string, bool) { return "x", k == "HF_TOKEN" })
	if len(withToken.Warnings) != 0 {
		t.Errorf("warnings with HF_TOKEN set: %q", withToken.Warnings)
	}
}

func TestDigestIgnoresFormatting(t *testing.T) {
	a, err := Parse("a", []byte(validSpec), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	compact := strings.Join(strings.Fields(validSpec), " ")
	b, err := Parse("b", []byte(compact), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Fatalf("digest depends on whitespace: %s vs %s", a.Digest, b.Digest)
	}
	c, _ := Parse("c", []byte(strings.Replace(validSpec, `"master"`, `"main"`, 1)), noEnv)
	if c.Digest == a.Digest {
		t.Fatal("digest did not change with the spec")
	}
}

// Each rule: a spec that breaks it, and the JSON path the error must name.
var badSpecs = []struct {
	name, spec, path, expect string
}{
	{"override to a local path", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"python":{"overrides":{"opencv-python":"./vendor/cv"}}}`, `python.overrides["opencv-python"]`, "local path"},
	{"override with a variable", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"python":{"overrides":{"a":"a @ https://h/${HF_TOKEN}/a.whl"}}}`, `python.overrides["a"]`, "${"},
	{"override twice", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"python":{"overrides":{"OpenCV-Python":null,"opencv_python":"x"}}}`, `python.overrides["opencv_python"]`, "same distribution"},
	{"requirement with an index", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"python":{"requirements":["numpy","--find-links https://h/"]}}`, "python.requirements[1]", "not allowed"},
	{"pre not a boolean", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"python":{"pre":"yes"}}`, "python.pre", "boolean"},
	{"unknown top key", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"colour":1}`, "colour", "unknown key"},
	{"unknown node key", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"custom_nodes":[{"repo":"https://h/a"},{"repo":"https://h/b","branch":"x"}]}`, "custom_nodes[1].branch", "unknown key"},
	{"schema version", `{"schema_version":1,"version_id":"x","comfy":{"repo":"https://h/r"}}`, "schema_version", "expected 2"},
	{"missing version_id", `{"schema_version":2,"comfy":{"repo":"https://h/r"}}`, "version_id", "required"},
	{"missing comfy.repo", `{"schema_version":2,"version_id":"x","comfy":{"ref":"main"}}`, "comfy.repo", "required"},
	{"missing model source", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"models":[{"name":"m"}]}`, "models[0].source", "required"},
	{"bad model scheme", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"models":[{"source":"s3://b/k.bin"}]}`, "models[0].source", "unsupported scheme"},
	{"short hf source", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"models":[{"source":"hf://owner/repo"}]}`, "models[0].source", "hf://owner/repo/path"},
	{"bad repo scheme", `{"schema_version":2,"version_id":"x","comfy":{"repo":"ftp://h/r"}}`, "comfy.repo", "expected a git URL"},
	{"node name with dotdot", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"custom_nodes":[{"repo":"https://h/a","name":".."}]}`, "custom_nodes[0].name", "plain name"},
	{"node name .git in any case", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"custom_nodes":[{"repo":"https://h/a","name":".GiT"}]}`, "custom_nodes[0].name", ".git"},
	{"node name with slash", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"custom_nodes":[{"repo":"https://h/a"},{"repo":"https://h/b"},{"repo":"https://h/c","name":"a/b"}]}`, "custom_nodes[2].name", "without '/'"},
	{"subdir with dotdot", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"models":[{"source":"https://h/m.bin","target_subdir":"loras/../../etc"}]}`, "models[0].target_subdir", "'..'"},
	{"absolute subdir", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"models":[{"source":"https://h/m.bin","target_subdir":"/etc"}]}`, "models[0].target_subdir", "absolute"},
	{"duplicate node names", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"custom_nodes":[{"repo":"https://h/a/Nodes"},{"repo":"https://other/b/Nodes.git"}]}`, "custom_nodes[1].name", "duplicate node name"},
	{"duplicate model dest", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"models":[{"source":"https://h/a/m.bin","target_subdir":"vae"},{"source":"hf://o/r/m.bin","target_subdir":"vae"}]}`, "models[1]", "duplicate model destination vae/m.bin"},
	{"version id path", `{"schema_version":2,"version_id":"../x","comfy":{"repo":"https://h/r"}}`, "version_id", "letters, digits"},
	{"wrong type", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"options":{"offline":"yes"}}`, "options.offline", "expected boolean"},
	{"bad commit", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r","commit":"HEAD~1"}}`, "comfy.commit", "hex commit"},
	{"not json", `{"schema_version":2,`, "", "not valid JSON"},
	{"trailing data", `{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"}} {}`, "", "after the top-level value"},
}

func TestEachRuleNamesThePath(t *testing.T) {
	for _, tc := range badSpecs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.json", []byte(tc.spec), noEnv)
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("want a *SpecError, got %v", err)
			}
			found := false
			for _, p := range se.Problems {
				if p.Path == tc.path && strings.Contains(p.Msg, tc.expect) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no problem at %q containing %q in:\n%v", tc.path, tc.expect, err)
			}
			if !strings.HasPrefix(err.Error(), "bad.json: ") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	spec := `{"schema_version":3,"version_id":"x","comfy":{"repo":"https://h/r","extra":1},"models":[{"name":"m"}],"bogus":true}`
	_, err := Parse("many.json", []byte(spec), noEnv)
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatal(err)
	}
	want := []string{"schema_version", "comfy.extra", "models[0].source", "bogus"}
	for _, w := range want {
		if !strings.Contains(err.Error(), w+":") {
			t.Errorf("missing %s in %v", w, err)
		}
	}
	// Semantic problems are also all listed together.
	spec = `{"schema_version":2,"version_id":"x","comfy":{"repo":"ftp://r"},"custom_nodes":[{"repo":"https://h/a","name":"a/b"}],"models":[{"source":"s3://x/y"}]}`
	_, err = Parse("sem.json", []byte(spec), noEnv)
	if !errors.As(err, &se) || len(se.Problems) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
}

func TestLocate(t *testing.T) {
	dir := testsupport.TempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "abc.json"), []byte(validSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Locate("abc", dir)
	if err != nil || got != filepath.Join(dir, "abc.json") {
		t.Fatalf("Locate = %q, %v", got, err)
	}
	if _, err := Locate("../etc/passwd", dir); err == nil {
		t.Fatal("a path was accepted as a version id")
	}
	if _, err := Locate("nope", dir); err == nil || !strings.Contains(err.Error(), "nope.json") {
		t.Fatalf("missing spec: %v", err)
	}
}

func TestExampleSpecsAreValid(t *testing.T) {
	files, _ := filepath.Glob("*.json")
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "schema.json") { // schema.json, output.schema.json
			continue
		}
		n++
		if _, err := Load(f, noEnv); err != nil {
			t.Errorf("%v", err)
		}
	}
	if n == 0 {
		t.Fatal("no example spec in versions/")
	}
}

func TestResolveEnvMarksSecrets(t *testing.T) {
	s, err := Parse("v1.json", []byte(validSpec), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	vals, secret := s.ResolveEnv(func(k string) (string, bool) { return "tok-123", k == "HF_TOKEN" })
	if vals["HF_TOKEN"] != "tok-123" || !secret["HF_TOKEN"] {
		t.Errorf("HF_TOKEN: %q secret=%v", vals["HF_TOKEN"], secret["HF_TOKEN"])
	}
	if vals["PYTORCH_CUDA_ALLOC_CONF"] != "expandable_segments:True" || secret["PYTORCH_CUDA_ALLOC_CONF"] {
		t.Errorf("literal env: %q secret=%v", vals["PYTORCH_CUDA_ALLOC_CONF"], secret["PYTORCH_CUDA_ALLOC_CONF"])
	}
}

func TestLockRoundTripAndCurrency(t *testing.T) {
	s, err := Parse("v1.json", []byte(validSpec), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	file := LockPath(testsupport.TempDir(t), s.VersionID)
	if _, err := ReadLock(file); !errors.Is(err, ErrNoLock) {
		t.Fatalf("missing lock: %v", err)
	}
	l := &Lock{VersionID: s.VersionID, SpecDigest: s.Digest, Comfy: LockedRepo{Repo: "r", Commit: "c"}}
	if err := WriteLock(file, l); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLock(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.CheckCurrent(s, file); err != nil {
		t.Fatal(err)
	}
	changed, _ := Parse("v1.json", []byte(strings.Replace(validSpec, "master", "dev", 1)), noEnv)
	if err := back.CheckCurrent(changed, file); err == nil || !strings.Contains(err.Error(), "changed since it was locked") {
		t.Fatalf("changed spec accepted: %v", err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*tmp*")); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

func TestRedactURL(t *testing.T) {
	if got := repourl.Redact("https://user:pw@example.com/o/r.git"); strings.Contains(got, "pw") {
		t.Fatalf("RedactURL kept the password: %s", got)
	}
}

// FuzzParse: any input gives a spec or an error, never a panic; an accepted
// spec has every default applied.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validSpec))
	for _, tc := range badSpecs {
		f.Add([]byte(tc.spec))
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.json", data, noEnv)
		if err != nil {
			if s != nil {
				t.Fatal("both a spec and an error")
			}
			return
		}
		for _, n := range s.CustomNodes {
			if n.Name == "" || strings.Contains(n.Name, "/") {
				t.Fatalf("accepted node name %q", n.Name)
			}
		}
		for _, m := range s.Models {
			if m.TargetSubdir == "" || strings.HasPrefix(m.Dest(), "/") || strings.Contains("/"+m.Dest()+"/", "/../") {
				t.Fatalf("accepted model destination %q", m.Dest())
			}
		}
	})
}
