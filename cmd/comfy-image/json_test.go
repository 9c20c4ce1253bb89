package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// outputSchema compiles the published schema of --json output.
func outputSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "versions", "output.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("output.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("output.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jsonDoc checks stdout is exactly one JSON document valid against the
// schema and decodes it.
func jsonDoc(t *testing.T, sch *jsonschema.Schema, res testsupport.Result, into any) {
	t.Helper()
	if res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	dec := json.NewDecoder(strings.NewReader(res.Stdout))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, res.Stdout)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("stdout holds more than one JSON document:\n%s", res.Stdout)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("output does not match versions/output.schema.json: %v\n%s", err, raw)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatal(err)
	}
}

type jsonOut struct {
	SchemaVersion int    `json:"schema_version"`
	Command       string `json:"command"`
	VersionID     string `json:"version_id"`
	Target        string `json:"target"`
	Resolved      struct {
		Comfy       struct{ Commit string }
		CustomNodes []struct{ Name, Commit string } `json:"custom_nodes"`
		Models      []struct{ Dest, SHA256 string }
		Packages    []struct{ Name, Version string } `json:"python_packages"`
	}
	Parts []struct {
		Part, Name, Digest, State string
		Size                      int64
	}
	Images struct {
		App    struct{ Digest string }
		Models struct{ Digest string }
	}
	Timings map[string]float64
	// inspect
	Digest      string
	Size        int64
	ModelsImage string `json:"models_image"`
	Base        struct {
		Digest string
		Layers int
		Size   int64
	}
	Models []struct{ Dest, SHA256 string }
	Layers []struct {
		Index      int
		Part, Name string
		Size       int64
	}
}

func TestJSONOutputFollowsThePublishedSchema(t *testing.T) {
	sch := outputSchema(t)
	v := testsupport.NewVersion(t)
	cache := filepath.Join(v.Dir, "cache")
	env := v.Env(cache)
	spec := []string{"--spec", v.SpecFile}

	var lock jsonOut
	jsonDoc(t, sch, testsupport.Run(t, v.Dir, env, append([]string{"lock", "--json"}, spec...)...), &lock)
	if lock.SchemaVersion != 1 || lock.Command != "lock" || lock.VersionID != "demo" || lock.Resolved.Comfy.Commit != v.Core.RevParse("HEAD") || len(lock.Resolved.CustomNodes) != 2 {
		t.Errorf("lock --json: %+v", lock)
	}

	target := filepath.Join(v.Dir, "target")
	var real jsonOut
	jsonDoc(t, sch, testsupport.Run(t, v.Dir, env, append([]string{"realize", "--json", "--target", target, "--wheels-dir", v.Wheels}, spec...)...), &real)
	if real.Target != target || len(real.Resolved.Models) != 2 || len(real.Resolved.Packages) != 3 {
		t.Errorf("realize --json: %+v", real)
	}

	base := testsupport.SyntheticBase(t)
	out := filepath.Join(v.Dir, "out")
	var build jsonOut
	res := testsupport.Run(t, v.Dir, env, append([]string{"build", "--json", "--base", base, "--wheels-dir", v.Wheels, "--output", "oci:" + out + ":demo"}, spec...)...)
	jsonDoc(t, sch, res, &build)
	if !strings.Contains(res.Stderr, "wrote oci:") {
		t.Errorf("build --json: the human text is not on stderr:\n%s", res.Stderr)
	}
	states := map[string]int{}
	for _, p := range build.Parts {
		states[p.State]++
	}
	if states["packed"] == 0 || build.Images.App.Digest == "" || build.Images.Models.Digest == "" || build.Timings["total_seconds"] <= 0 {
		t.Errorf("build --json: %+v", build)
	}
	// A second build reuses every layer.
	jsonDoc(t, sch, testsupport.Run(t, v.Dir, env, append([]string{"build", "--json", "--base", base, "--wheels-dir", v.Wheels}, spec...)...), &build)
	for _, p := range build.Parts {
		if p.State != "reused" {
			t.Errorf("second build: %s %s is %s, want reused", p.Part, p.Name, p.State)
		}
	}

	var app, models jsonOut
	jsonDoc(t, sch, testsupport.Run(t, v.Dir, nil, "inspect", "--json", "oci:"+out+":demo"), &app)
	jsonDoc(t, sch, testsupport.Run(t, v.Dir, nil, "inspect", "--json", "oci:"+out+":demo-models"), &models)
	baseImg := testsupport.SyntheticBaseImage(t, base)
	baseDigest, _ := baseImg.Digest()
	baseLayers, _ := baseImg.Layers()
	if app.Digest != build.Images.App.Digest || app.ModelsImage != build.Images.Models.Digest || models.Digest != app.ModelsImage {
		t.Errorf("inspect: app %s built with models %s; build made app %s, models %s; models image is %s",
			app.Digest, app.ModelsImage, build.Images.App.Digest, build.Images.Models.Digest, models.Digest)
	}
	if app.Base.Digest != baseDigest.String() || app.Base.Layers != len(baseLayers) || len(app.Models) != 2 {
		t.Errorf("inspect app: base %+v, models %+v", app.Base, app.Models)
	}
	var sum int64
	for i, l := range app.Layers {
		sum += l.Size
		if l.Index != i+1 {
			t.Errorf("app layer %d numbered %d", i+1, l.Index)
		}
	}
	if sum != app.Size {
		t.Errorf("inspect size %d, layers sum to %d", app.Size, sum)
	}
	for i, l := range models.Layers {
		if l.Index != i+1 || l.Part != "model" {
			t.Errorf("models layer %d: %+v", i+1, l)
		}
	}
	// The text says the same, in 100 columns.
	text := testsupport.Run(t, v.Dir, nil, "inspect", "oci:"+out+":demo")
	for _, want := range []string{"total ", "base " + baseDigest.String(), ": " + progress.Size(app.Base.Size) + " in layer 1\n",
		"models image " + app.ModelsImage + ": 2 files"} {
		if !strings.Contains(text.Stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, text.Stdout)
		}
	}
	// One of a thing is said in the singular ("1 file", not "1 files").
	modelsText := testsupport.Run(t, v.Dir, nil, "inspect", "oci:"+out+":demo-models")
	if one := regexp.MustCompile(`\b1 (layers|files)\b|layers 1-1\b`); one.MatchString(text.Stdout + modelsText.Stdout) {
		t.Errorf("inspect says %q:\n%s\n%s", one.FindString(text.Stdout+modelsText.Stdout), text.Stdout, modelsText.Stdout)
	}
}
