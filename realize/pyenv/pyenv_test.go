package pyenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

func TestTorchConstraints(t *testing.T) {
	got := TorchConstraints([]string{"torch==2.4.0+cu121", "numpy<2", "xformers>=0.0.27"}, map[string]string{"torch": "2.3.0", "torchvision": "0.18.0"})
	want := "torch==2.4.0+cu121,torchvision==0.18.0,xformers>=0.0.27"
	if strings.Join(got, ",") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if got := TorchConstraints(nil, nil); len(got) != 0 {
		t.Fatalf("no torch chosen: %v", got)
	}
}

func TestRequirementNames(t *testing.T) {
	got := RequirementNames("# comment\n--extra-index-url x\nOpenCV_Python>=4 # cv\n\ntorch\nsome.pkg[extra]==1\n")
	for _, n := range []string{"opencv-python", "torch", "some-pkg"} {
		if _, ok := got[n]; !ok {
			t.Errorf("%s missing from %v", n, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("names %v", got)
	}
}

func TestPlatforms(t *testing.T) {
	p := Target{Version: "3.11", Arch: "x86_64", Glibc: "2.36"}.Platforms()
	if p[0] != "manylinux_2_36_x86_64" || !contains(p, "manylinux_2_17_x86_64") || !contains(p, "manylinux2014_x86_64") || contains(p, "manylinux_2_37_x86_64") {
		t.Fatalf("platforms %v", p)
	}
	if a := (Target{Version: "3.12", Arch: "aarch64", Glibc: "2.31"}).abi(); a != "cp312" {
		t.Fatalf("abi %s", a)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestConflictNames(t *testing.T) {
	out := `ERROR: Cannot install -r a.txt (line 1) and beta>=1.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested beta>=1.0
    The user requested beta<1.0
    The user requested (constraint) torch==2.0.0
    nodepkg 1.0 depends on alpha==2
`
	got := conflictNames(out)
	for _, n := range []string{"beta", "torch", "alpha"} {
		if !got[n] {
			t.Errorf("%s not blamed: %v", n, got)
		}
	}
}

// A venv made by the real python3 -m venv and pip, then moved: its console
// scripts still run (relocatable), and nothing in it names the old path.
func TestRelocatableVenv(t *testing.T) {
	dir := testsupport.TempDir(t)
	wheels := filepath.Join(dir, "wheels")
	testsupport.BuildWheel(t, wheels, testsupport.Wheel{Name: "gamma", Version: "2.0", Scripts: map[string]string{"gamma-tool": "gamma:main"}})
	ctx := context.Background()
	v, err := Create(ctx, "python3", filepath.Join(dir, "first", ".venv"), false)
	if err != nil {
		t.Fatal(err)
	}
	// Made beside its place and renamed: nothing names the temporary
	// folder, and none is left.
	if left, _ := filepath.Glob(filepath.Join(dir, "first", ".*.tmp-*")); len(left) > 0 {
		t.Fatalf("temporary venvs left: %v", left)
	}
	if out, _ := exec.Command("grep", "-rl", ".venv.tmp-", v.Dir).CombinedOutput(); len(out) > 0 {
		t.Fatalf("files name the temporary folder:\n%s", out)
	}
	if out, err := exec.Command(v.Python(), "-m", "pip", "--version").CombinedOutput(); err != nil {
		t.Fatalf("pip in the new venv: %v\n%s", err, out)
	}
	pkgs, err := v.Install(ctx, []Requirements{{Owner: "test", Lines: []string{"gamma"}}}, nil, Options{WheelsDir: wheels})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 1 || pkgs[0].Name != "gamma" || pkgs[0].SHA256 == "" {
		t.Fatalf("installed %+v", pkgs)
	}
	if err := v.MakeRelocatable(); err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(dir, "elsewhere")
	if out, err := exec.Command("mv", filepath.Join(dir, "first"), moved).CombinedOutput(); err != nil {
		t.Fatalf("mv: %s", out)
	}
	out, err := exec.Command(filepath.Join(moved, ".venv", "bin", "gamma-tool")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "gamma 2.0") {
		t.Fatalf("moved console script: %s %v", out, err)
	}
	if out, _ := exec.Command("grep", "-rl", filepath.Join(dir, "first"), moved).CombinedOutput(); len(out) > 0 {
		t.Fatalf("files still name the old path:\n%s", out)
	}
}

// pip runs with none of the caller's secrets or PIP_* settings: a python3
// wrapper records the environment pip gets while it downloads wheels.
func TestPipGetsNoSecrets(t *testing.T) {
	dir := testsupport.TempDir(t)
	wheels := filepath.Join(dir, "wheels")
	testsupport.BuildWheel(t, wheels, testsupport.Wheel{Name: "alpha", Version: "1.0"})
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal(err)
	}
	spy := filepath.Join(dir, "python3")
	os.WriteFile(spy, []byte("#!/bin/sh\nenv > "+dir+"/env.$$\nexec "+py+" \"$@\"\n"), 0o755)
	t.Setenv("HF_TOKEN", testsupport.Secret())
	t.Setenv("PIP_EXTRA_INDEX_URL", "http://127.0.0.1:9/evil/")
	t.Setenv("PIP_PRE", "1")
	target := Target{Python: "/usr/bin/python3", Version: "3.11", Arch: "x86_64", Glibc: "2.36"}
	ws, err := DownloadWheels(context.Background(), spy, target, []Requirements{{Owner: "test", Lines: []string{"alpha"}}}, nil, nil,
		Options{WheelsDir: wheels}, filepath.Join(dir, "cache"))
	if err != nil || len(ws) != 1 {
		t.Fatalf("download: %v %+v", err, ws)
	}
	dumps, _ := filepath.Glob(filepath.Join(dir, "env.*"))
	if len(dumps) == 0 {
		t.Fatal("pip did not run through the wrapper")
	}
	for _, d := range dumps {
		data, _ := os.ReadFile(d)
		for _, bad := range []string{testsupport.Secret(), "PIP_EXTRA_INDEX_URL", "PIP_PRE"} {
			if strings.Contains(string(data), bad) {
				t.Errorf("pip's environment holds %s:\n%s", bad, data)
			}
		}
	}
}

// The venv is made in a private temporary folder (0700) and renamed into
// place; it must still be readable by the user ComfyUI runs as, like one
// `python -m venv` makes in place (0755), not private to root.
func TestVenvFolderIsNotPrivate(t *testing.T) {
	dir := filepath.Join(testsupport.TempDir(t), ".venv")
	if _, err := Create(context.Background(), "python3", dir, false); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o755 {
		t.Errorf("venv folder mode %v, want drwxr-xr-x like python -m venv makes", st.Mode())
	}
}
