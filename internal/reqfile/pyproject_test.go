package reqfile

import (
	"errors"
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func writePyproject(t *testing.T, content string) DirSource {
	t.Helper()
	dir := testsupport.TempDir(t)
	if err := os.WriteFile(filepath.Join(dir, Pyproject), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return DirSource(dir)
}

func TestPyprojectDependencies(t *testing.T) {
	src := writePyproject(t, `[project]
name = "comfyui-node"
version = "1.0"
dependencies = [
  "Delta>=1.0",
  'numpy; python_version >= "3.9"',
  "segment-anything @ git+https://github.com/facebookresearch/segment-anything",
]

[tool.comfy]
PublisherId = "someone"
`)
	lines, ok, err := ParsePyproject(src, "node X", Pyproject)
	if err != nil || !ok {
		t.Fatalf("ok %v err %v", ok, err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.Name+"@"+l.File+":"+itoa(l.Num)+"="+l.Text)
	}
	want := `delta@pyproject.toml:5=Delta>=1.0|numpy@pyproject.toml:6=numpy; python_version >= "3.9"|segment-anything@pyproject.toml:7=segment-anything @ git+https://github.com/facebookresearch/segment-anything`
	if strings.Join(got, "|") != want {
		t.Fatalf("lines\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// A pyproject.toml with no [project].dependencies declares nothing (the
// Comfy Registry's metadata file often holds only [tool.comfy]).
func TestPyprojectWithoutDependencies(t *testing.T) {
	for _, content := range []string{"[tool.comfy]\nPublisherId = \"x\"\n", "[project]\nname = \"x\"\n"} {
		lines, ok, err := ParsePyproject(writePyproject(t, content), "node X", Pyproject)
		if err != nil || ok || len(lines) != 0 {
			t.Errorf("%q: lines %v ok %v err %v", content, lines, ok, err)
		}
	}
}

// The same rules as requirements.txt: no local paths, no other URL
// schemes, no ${VAR}; bad TOML and wrong types are named with the line.
func TestPyprojectRefusals(t *testing.T) {
	for _, c := range []struct{ content, want string }{
		{"[project]\ndependencies = [\n  \"ok\",\n  \"./vendor/pkg\",\n]\n", "node X: pyproject.toml line 4: [project].dependencies[1]: \"./vendor/pkg\" is a local path"},
		{"[project]\ndependencies = [\"x @ file:///etc/passwd\"]\n", "pyproject.toml line 2: [project].dependencies[0]: \"x @ file:///etc/passwd\""},
		{"[project]\ndependencies = [\"x @ https://${HF_TOKEN}@h/x.whl\"]\n", "holds ${...}"},
		{"[project]\ndependencies = [\"x\", 3]\n", "[project].dependencies[1] is a int64, expected a requirement string"},
		{"[project]\ndependencies = \"x\"\n", "[project].dependencies is a string, expected a list"},
		{"[project]\nname = \"x\"\ndependencies = [\"x\"\n\n", "pyproject.toml line "},
		{"[project]\ndependencies = [\"x --index-url https://evil/\"]\n", "per-requirement options"},
	} {
		_, _, err := ParsePyproject(writePyproject(t, c.content), "node X", Pyproject)
		var e *Error
		if !errors.As(err, &e) || !e.BadInput() || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v\nwant it to contain %q", c.content, err, c.want)
		}
	}
}

func TestPyprojectSymlinkRefused(t *testing.T) {
	dir := testsupport.TempDir(t)
	os.WriteFile(filepath.Join(dir, "real.toml"), []byte("[project]\ndependencies = [\"x\"]\n"), 0o644)
	os.Symlink("real.toml", filepath.Join(dir, Pyproject))
	_, _, err := ParsePyproject(DirSource(dir), "node X", Pyproject)
	if err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Fatalf("error %v", err)
	}
}
