package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

func TestUnknownCommandsAndFlagsExitTwoWithSuggestions(t *testing.T) {
	dir := testsupport.TempDir(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"lok", "--version-id", "x"}, "did you mean lock?"},
		{[]string{"realise"}, "did you mean realize?"},
		{[]string{"lock", "--spce", "x.json"}, "did you mean --spec?"},
		{[]string{"build", "--max-layer", "3"}, "did you mean --max-layers?"},
		{[]string{"realize", "--targte", "x"}, "did you mean --target?"},
		{[]string{"lock", "--cache-dri", "x"}, "did you mean --cache-dir?"},
		{[]string{"cache", "prune", "--keep-locks", "x"}, "did you mean --keep-lock?"},
		// A mistyped subcommand of a group is an error too (was help, exit 0).
		{[]string{"cache", "dux"}, `unknown command "dux" for "comfy-image cache"; did you mean du?`},
		{[]string{"import", "snapshto", "x.json"}, `for "comfy-image import"; did you mean snapshot?`},
		{[]string{"export", "snapsht"}, "did you mean snapshot? (see comfy-image export --help)"},
		// An argument to a command that takes none is not a command.
		{[]string{"lock", "extra"}, `unexpected argument "extra": comfy-image lock takes no arguments`},
		{[]string{"cache", "du", "extra"}, `unexpected argument "extra": comfy-image cache du takes no arguments`},
		{[]string{"realize", "--target", "x", "extra"}, `unexpected argument "extra"`},
	} {
		res := testsupport.Run(t, dir, nil, tc.args...)
		if res.Code != 2 || !strings.Contains(res.Stderr, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", tc.args, res.Code, tc.want, res.Stderr)
		}
	}
}

func TestBuildChecksFlagsBeforeAnyWork(t *testing.T) {
	v := testsupport.NewVersion(t)
	cache := filepath.Join(v.Dir, "cache")
	file := filepath.Join(v.Dir, "a-file")
	os.WriteFile(file, []byte("x"), 0o644)
	build := []string{"build", "--spec", v.SpecFile, "--base", "oci:" + filepath.Join(v.Dir, "base"), "--wheels-dir", v.Wheels}
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--output", "out.tar"}, nil, "expected oci:DIR[:TAG] or tar:FILE"},
		{[]string{"--output", "docker.io/me/app:v1"}, nil, "expected oci:DIR[:TAG] or tar:FILE"},
		{[]string{"--output", "oci:" + filepath.Join(v.Dir, "ok"), "--output", "out.tar"}, nil, `"out.tar"`},
		{[]string{"--output", "tar:" + filepath.Join(v.Dir, "missing", "app.tar")}, nil, "folder " + filepath.Join(v.Dir, "missing") + " does not exist"},
		{[]string{"--output", "tar:" + v.Dir}, nil, "is a folder"},
		{[]string{"--output", "oci:" + file}, nil, file + " is a file"},
		{[]string{"--jobs", "0"}, nil, "--jobs 0"},
		{[]string{"--max-layers", "0"}, nil, "--max-layers 0"},
		{nil, []string{"SOURCE_DATE_EPOCH=yesterday"}, "SOURCE_DATE_EPOCH"},
	} {
		args := append(append([]string{}, build...), tc.args...)
		res := testsupport.Run(t, v.Dir, append(v.Env(cache), tc.env...), args...)
		if res.Code != 2 || !strings.Contains(res.Stderr, tc.want) {
			t.Errorf("%v %v: exit %d, want 2 and %q:\n%s", tc.args, tc.env, res.Code, tc.want, res.Stderr)
		}
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Error("a build refused for its flags created the cache")
	}
}

func TestInspectWithoutImageSaysWhatItTakes(t *testing.T) {
	res := testsupport.Run(t, testsupport.TempDir(t), nil, "inspect")
	if res.Code != 2 || !strings.Contains(res.Stderr, "oci:DIR[:TAG]") || !strings.Contains(res.Stderr, "tar:FILE") {
		t.Fatalf("exit %d:\n%s", res.Code, res.Stderr)
	}
}

func TestBadEnvKeyNamesItsJSONPath(t *testing.T) {
	dir := testsupport.TempDir(t)
	file := filepath.Join(dir, "bad.json")
	os.WriteFile(file, []byte(`{"schema_version":2,"version_id":"x","comfy":{"repo":"https://h/r"},"custom_nodes":[],"models":[],"env":{"OK":"1","1BAD":"x","BAD KEY":"y","":"z"}}`), 0o644)
	res := testsupport.Run(t, dir, []string{"COMFY_CACHE=" + filepath.Join(dir, "cache")}, "lock", "--spec", file)
	// Each key is named so that it can be found: quoted, the empty one too.
	for _, want := range []string{file + ": 3 problems:", `env["1BAD"]: expected an environment variable name`,
		`env["BAD KEY"]: expected`, `env[""]: expected`} {
		if res.Code != 2 || !strings.Contains(res.Stderr, want) {
			t.Errorf("exit %d, want 2 and %q:\n%s", res.Code, want, res.Stderr)
		}
	}
}

// TestInspectOfALocalImageNamedWrongly: a user who built --output oci:out
// and types "inspect out" (no oci:) is told what they meant, not sent to
// Docker Hub; a layout or a tar file that is not there is a usage error
// naming the path, without the cache's or Go's internals.
func TestInspectOfALocalImageNamedWrongly(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.tar"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ arg, want string }{
		{"out", `"out" is a folder here, not a registry reference: did you mean oci:out?`},
		{"app.tar", `"app.tar" is a file here, not a registry reference: did you mean tar:app.tar?`},
		{"oci:missing", `"oci:missing": missing is not an OCI layout`},
		{"oci:app.tar:v1", `"oci:app.tar:v1": app.tar is not an OCI layout`},
		{"tar:missing.tar", `"tar:missing.tar": missing.tar is not a file`},
	} {
		res := testsupport.Run(t, dir, []string{"DOCKER_CONFIG=" + dir}, "inspect", tc.arg)
		if res.Code != 2 || !strings.Contains(res.Stderr, tc.want) {
			t.Errorf("inspect %s: exit %d, want 2 and %q:\n%s", tc.arg, res.Code, tc.want, res.Stderr)
		}
		if strings.Contains(res.Stderr, "index.docker.io") || strings.Contains(res.Stderr, "stat ") {
			t.Errorf("inspect %s: the error shows internals:\n%s", tc.arg, res.Stderr)
		}
		testsupport.CheckMessages(t, res.Stderr)
	}
	// build's --base is read the same way, before the spec is resolved.
	spec := `{"schema_version": 2, "version_id": "x", "comfy": {"repo": "file:///nowhere/ComfyUI"}}`
	if err := os.WriteFile(filepath.Join(dir, "x.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	res := testsupport.Run(t, dir, []string{"DOCKER_CONFIG=" + dir, "COMFY_CACHE=" + filepath.Join(dir, "cache")},
		"build", "--spec", "x.json", "--base", "out", "--output", "oci:img")
	if want := `--base "out" is a folder here, not a registry reference: did you mean oci:out?`; res.Code != 2 || !strings.Contains(res.Stderr, want) {
		t.Errorf("build --base out: exit %d, want 2 and %q:\n%s", res.Code, want, res.Stderr)
	}
}

func TestHelpHasExamplesEnvironmentAndExitCodes(t *testing.T) {
	dir := testsupport.TempDir(t)
	for cmd, env := range map[string][]string{
		"":                {"COMFY_CACHE", "HF_TOKEN", "SOURCE_DATE_EPOCH", "DOCKER_CONFIG"},
		"lock":            {"COMFY_CACHE", "HF_TOKEN", "HF_ENDPOINT"},
		"realize":         {"COMFY_CACHE", "HF_TOKEN", "HF_ENDPOINT"},
		"build":           {"COMFY_CACHE", "HF_TOKEN", "HF_ENDPOINT", "SOURCE_DATE_EPOCH", "DOCKER_CONFIG"},
		"inspect":         {"DOCKER_CONFIG"},
		"cache du":        {"COMFY_CACHE"},
		"cache prune":     {"COMFY_CACHE"},
		"version":         nil,
		"check":           nil,
		"import":          nil,
		"import snapshot": nil,
		"export":          nil,
		"export snapshot": nil,
	} {
		args := append(strings.Fields(cmd), "--help")
		res := testsupport.Run(t, dir, nil, args...)
		if res.Code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, res.Code, res.Stderr)
		}
		want := append([]string{"Examples:", "Exit codes:", "  2    bad usage or bad spec", "  130  interrupted"}, env...)
		for _, w := range want {
			if !strings.Contains(res.Stdout, w) {
				t.Errorf("%v lacks %q:\n%s", args, w, res.Stdout)
			}
		}
		// A `word` in a flag's usage is cobra's name for the flag's value:
		// "--run-arg podman run" would read as two values.
		if bad := regexp.MustCompile(`--[a-z-]+ [a-z]+ [a-z]+ {2,}`).FindString(res.Stdout); bad != "" {
			t.Errorf("%v: a flag shows a value name of several words: %q", args, bad)
		}
		if strings.Count(res.Stdout, "Exit codes:") != 1 {
			t.Errorf("%v: the exit codes appear more than once", args)
		}
	}
}

func TestVersionPrintsModuleVersionAndRevision(t *testing.T) {
	// Go stamps no revision in a git worktree (.git is a file there), so
	// build from a clone of the committed tree, as a user's checkout is.
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	clone := filepath.Join(testsupport.TempDir(t), "src")
	if msg, err := exec.Command("git", "clone", "-q", strings.TrimSpace(string(root)), clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, msg)
	}
	out, err := exec.Command("git", "-C", clone, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := strings.TrimSpace(string(out))
	bin := filepath.Join(testsupport.TempDir(t), "comfy-image")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/comfy-image")
	build.Dir = clone
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, msg)
	}
	got, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The module version is a pseudo-version naming the same commit.
	want := regexp.MustCompile(`^comfy-image v0\.0\.0-[0-9]{14}-` + rev[:12] + ` \(revision ` + rev + `, go[0-9.]+\)\n$`)
	if !want.Match(got) {
		t.Fatalf("version printed %q, want the module version and revision %s", got, rev)
	}
}

func TestInterruptExits130AndRerunResumes(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	args := []string{"realize", "--version-id", "demo", "--target", target, "--wheels-dir", s.wheels}
	s.hf.Throttle(100_000)
	p := testsupport.Start(t, s.dir, s.env(), args...)
	var lines []string
	for line := range p.Lines {
		lines = append(lines, line)
		if strings.Contains(line, "wan_unet.gguf: started") {
			p.Cmd.Process.Signal(syscall.SIGINT)
		}
	}
	p.Cmd.Wait()
	if code := p.Cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit %d after SIGINT, want 130:\n%s", code, strings.Join(lines, "\n"))
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, "interrupted") || !strings.Contains(last, s.cache) || !strings.Contains(last, "run the same command again to resume") {
		t.Fatalf("last line %q does not say what was kept and that a rerun resumes", last)
	}
	// The download cut by Ctrl-C did not fail: it stopped, and what came is kept.
	all := strings.Join(lines, "\n")
	if !strings.Contains(last, "partial downloads") || strings.Contains(all, "wan_unet.gguf: failed") ||
		!strings.Contains(all, "wan_unet.gguf: stopped after") || strings.Contains(all, "after size unknown") {
		t.Fatalf("the interrupted download is reported as a failure or its partial file is not said to be kept:\n%s", all)
	}
	s.hf.Throttle(0)
	if res := testsupport.Run(t, s.dir, s.env(), args...); res.Code != 0 {
		t.Fatalf("rerun: exit %d\n%s", res.Code, res.Stderr)
	}
}

func TestStderrCheckCatchesLeaks(t *testing.T) {
	for _, msg := range []string{"labels map[a:b]", "error: <nil>", "git\x00said", "open /c/models/tmp/ab.part: gone", "rename /c/layers/ab/.pack-123: x", "/c/git/h/r.git.tmp-4242 exists"} {
		ft := &fakeT{TB: t}
		testsupport.CheckMessages(ft, msg)
		if !ft.failed {
			t.Errorf("CheckMessages accepted %q", msg)
		}
	}
	ft := &fakeT{TB: t}
	testsupport.CheckMessages(ft, "realize: wrote /tmp/TestX/target/models/vae/a.safetensors (2.9 MiB)\n")
	if ft.failed {
		t.Error("CheckMessages refused a clean message")
	}
}

// fakeT records a failure instead of failing the test, to test a checker.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Helper()               {}
