package testsupport

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Wheel describes a small pure-Python wheel for tests.
type Wheel struct {
	Name, Version string
	// Requires are Requires-Dist lines ("dep>=1.0").
	Requires []string
	// Scripts are console scripts: name -> "module:function".
	Scripts map[string]string
	// Files are extra files inside the package (path -> content).
	Files map[string]string
}

// FileName is the wheel's file name for a tag ("py3-none-any").
func (w Wheel) FileName(tag string) string {
	return fmt.Sprintf("%s-%s-%s.whl", strings.ReplaceAll(w.Name, "-", "_"), w.Version, tag)
}

// BuildWheel writes w into dir as a real wheel (zip with METADATA, WHEEL,
// RECORD) that pip installs, and returns its path. The module of the same
// name has VERSION and, for each script, a function printing its name.
func BuildWheel(t testing.TB, dir string, w Wheel) string {
	t.Helper()
	return BuildWheelTagged(t, dir, w, "py3-none-any")
}

// BuildWheelTagged is BuildWheel for another tag (a platform wheel).
func BuildWheelTagged(t testing.TB, dir string, w Wheel, tag string) string {
	t.Helper()
	mod := strings.ReplaceAll(w.Name, "-", "_")
	distInfo := fmt.Sprintf("%s-%s.dist-info", mod, w.Version)
	files := map[string]string{
		mod + "/__init__.py": fmt.Sprintf("VERSION = %q\n\ndef main():\n    print(%q, VERSION)\n", w.Version, w.Name),
	}
	for p, c := range w.Files {
		files[mod+"/"+p] = c
	}
	meta := fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\n", w.Name, w.Version)
	for _, r := range w.Requires {
		meta += "Requires-Dist: " + r + "\n"
	}
	files[distInfo+"/METADATA"] = meta
	files[distInfo+"/WHEEL"] = fmt.Sprintf("Wheel-Version: 1.0\nGenerator: comfy-image-tests\nRoot-Is-Purelib: %v\nTag: %s\n", tag == "py3-none-any", tag)
	if len(w.Scripts) > 0 {
		ep := "[console_scripts]\n"
		for name, target := range w.Scripts {
			ep += name + " = " + target + "\n"
		}
		files[distInfo+"/entry_points.txt"] = ep
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var record strings.Builder
	for _, n := range names {
		sum := sha256.Sum256([]byte(files[n]))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", n, base64.RawURLEncoding.EncodeToString(sum[:]), len(files[n]))
	}
	record.WriteString(distInfo + "/RECORD,,\n")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, w.FileName(tag))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, n := range append(names, distInfo+"/RECORD") {
		content := files[n]
		if n == distInfo+"/RECORD" {
			content = record.String()
		}
		fw, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
