package materialize_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"

	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/versions"
)

const venvRoot = "opt/comfy/.venv"

var py311 = pyenv.Target{Python: "/usr/bin/python3.11", Version: "3.11", Arch: "x86_64", Glibc: "2.36"}

// member is one file of a hand-made wheel; record says how RECORD lists it.
type member struct {
	name, content string
	record        string // "" lists the true hash and size; "-" leaves it out
}

// writeWheel writes a wheel of pkg 1.0 (WHEEL, METADATA, the members, and a
// RECORD as each member asks) the way a hostile index could serve it.
func writeWheel(t testing.TB, members ...member) string {
	t.Helper()
	const di = "pkg-1.0.dist-info"
	all := append([]member{
		{name: "pkg/__init__.py", content: "X = 1\n"},
		{name: di + "/METADATA", content: "Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n"},
		{name: di + "/WHEEL", content: "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}, members...)
	var record strings.Builder
	for _, m := range all {
		switch m.record {
		case "":
			sum := sha256.Sum256([]byte(m.content))
			fmt.Fprintf(&record, "%s,sha256=%s,%d\n", m.name, base64.RawURLEncoding.EncodeToString(sum[:]), len(m.content))
		case "-":
		default:
			fmt.Fprintf(&record, "%s,%s\n", m.name, m.record)
		}
	}
	record.WriteString(di + "/RECORD,,\n")
	all = append(all, member{name: di + "/RECORD", content: record.String()})
	file := filepath.Join(testsupport.TempDir(t), "pkg-1.0-py3-none-any.whl")
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range all {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: m.name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(m.content))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// unpack lays the wheel out as the image venv and writes its layer tar, as
// a build does; it returns the tar's entry names.
func unpack(t testing.TB, file string) ([]string, error) {
	t.Helper()
	w := pyenv.Wheel{LockedPackage: versions.LockedPackage{Name: "pkg", Version: "1.0", Wheel: filepath.Base(file)}, File: file}
	tree, err := materialize.BuildVenvTree(venvRoot, py311, false, []pyenv.Wheel{w})
	if err != nil {
		return nil, err
	}
	defer tree.Close()
	var buf bytes.Buffer
	if err := materialize.WriteTar(&buf, tree.Entries, materialize.TarOptions{ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	var names []string
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			t.Fatalf("reading back the layer: %v", err)
		}
		names = append(names, hdr.Name)
	}
}

// outsideVenv lists the entries that are neither the venv, inside it, nor
// one of its parent folders.
func outsideVenv(names []string) []string {
	var bad []string
	for _, n := range names {
		n = strings.TrimSuffix(n, "/")
		if n != venvRoot && !strings.HasPrefix(n, venvRoot+"/") && !strings.HasPrefix(venvRoot, n+"/") {
			bad = append(bad, n)
		}
	}
	return bad
}

func TestWheelMemberOutsideItsSchemeIsRefused(t *testing.T) {
	up := strings.Repeat("../", 12)
	for _, name := range []string{
		up + "etc/passwd",
		"/etc/passwd",
		"pkg/../../../../../../../etc/passwd",
		"pkg-1.0.data/scripts/" + up + "etc/passwd",
		"pkg-1.0.data/purelib/../../bin/evil",
		"pkg-1.0.data/headers/" + up + "etc/x.h",
		"pkg-1.0.data/data/" + up + "etc/cron.d/x",
		`pkg\..\..\..\etc\passwd`,
	} {
		t.Run(name, func(t *testing.T) {
			file := writeWheel(t, member{name: name, content: "root::0:0::/root:/bin/sh\n"})
			names, err := unpack(t, file)
			if err == nil {
				t.Fatalf("member %q accepted; entries outside the venv: %v", name, outsideVenv(names))
			}
			for _, want := range []string{filepath.Base(file), fmt.Sprintf("%q", name)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

func TestWriteTarRefusesNonLocalPaths(t *testing.T) {
	for _, p := range []string{"../etc/passwd", "/etc/passwd", "opt/../../etc/passwd", ""} {
		err := materialize.WriteTar(io.Discard, []materialize.Entry{materialize.BytesEntry(p, 0o644, []byte("x"))}, materialize.TarOptions{})
		if err == nil {
			t.Errorf("WriteTar accepted the path %q", p)
		} else if p != "" && !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name %q", err, p)
		}
	}
}

func TestWheelMembersAreCheckedAgainstRecord(t *testing.T) {
	good := sha256.Sum256([]byte("print(1)\n"))
	goodHash := "sha256=" + base64.RawURLEncoding.EncodeToString(good[:])
	for what, m := range map[string]member{
		"missing from RECORD": {name: "pkg/extra.py", content: "print(1)\n", record: "-"},
		"wrong hash":          {name: "pkg/extra.py", content: "print(2)\n", record: goodHash + ",9"},
		"wrong size":          {name: "pkg/extra.py", content: "print(1)\n", record: goodHash + ",100"},
		"no hash":             {name: "pkg/extra.py", content: "print(1)\n", record: ","},
		"a script, wrong hash": {name: "pkg-1.0.data/scripts/tool", content: "#!python\nprint(2)\n",
			record: goodHash + ",18"},
	} {
		t.Run(what, func(t *testing.T) {
			file := writeWheel(t, m)
			_, err := unpack(t, file)
			if err == nil {
				t.Fatalf("a member %s was installed", what)
			}
			for _, want := range []string{filepath.Base(file), fmt.Sprintf("%q", m.name)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

func TestWellFormedWheelUnpacks(t *testing.T) {
	strong := sha512.Sum512([]byte("y = 2\n"))
	file := writeWheel(t,
		// PEP 427 allows a stronger hash than sha256.
		member{name: "pkg/strong.py", content: "y = 2\n", record: "sha512=" + base64.RawURLEncoding.EncodeToString(strong[:]) + ",6"},
		member{name: "pkg/sub/data.json", content: "{}\n"},
		member{name: "pkg-1.0.data/scripts/tool", content: "#!python\nprint(1)\n"},
		member{name: "pkg-1.0.data/data/share/pkg/x.txt", content: "x\n"},
		// Signatures of RECORD are not listed in it.
		member{name: "pkg-1.0.dist-info/RECORD.jws", content: "sig", record: "-"},
	)
	names, err := unpack(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if bad := outsideVenv(names); len(bad) > 0 {
		t.Fatalf("entries outside the venv: %v", bad)
	}
	joined := strings.Join(names, "\n")
	for _, want := range []string{
		venvRoot + "/lib/python3.11/site-packages/pkg/sub/data.json",
		venvRoot + "/bin/tool",
		venvRoot + "/lib/python3.11/site-packages/pkg/strong.py",
		venvRoot + "/share/pkg/x.txt",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("layer lacks %s:\n%s", want, joined)
		}
	}
}

// FuzzWheelUnpack feeds odd member names and contents, and raw bytes as the
// wheel file: unpacking never panics and never yields an entry outside the
// venv.
func FuzzWheelUnpack(f *testing.F) {
	f.Add([]byte(nil), "pkg/mod.py", "x = 1\n", true)
	f.Add([]byte(nil), "../../../../etc/passwd", "root", true)
	f.Add([]byte(nil), "pkg-1.0.data/scripts/../../../x", "#!python\n", true)
	f.Add([]byte(nil), "pkg-1.0.data/data/a/../../../../b", "", false)
	f.Add([]byte(nil), "/abs", "", true)
	f.Add([]byte("PK\x03\x04garbage"), "", "", false)
	f.Fuzz(func(t *testing.T, raw []byte, name, content string, listed bool) {
		var file string
		if len(raw) > 0 {
			file = filepath.Join(testsupport.TempDir(t), "pkg-1.0-py3-none-any.whl")
			if err := os.WriteFile(file, raw, 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			record := ""
			if !listed {
				record = "-"
			}
			file = writeWheel(t, member{name: name, content: content, record: record})
		}
		names, err := unpack(t, file)
		if err != nil {
			return
		}
		if bad := outsideVenv(names); len(bad) > 0 {
			t.Fatalf("member %q: entries outside the venv: %v", name, bad)
		}
	})
}

// A wheel may not replace the venv's own files nor put a file where the
// tree has a folder or a link: a console script named "." made bin/ a
// file, one named "python" replaced the interpreter link with a script
// that runs itself, and a data file below lib64 (a link) wrote through it.
func TestWheelCannotReplaceTheVenvItself(t *testing.T) {
	for name, m := range map[string]member{
		"script .":      {name: "pkg-1.0.dist-info/entry_points.txt", content: "[console_scripts]\n. = pkg:main\n"},
		"script python": {name: "pkg-1.0.dist-info/entry_points.txt", content: "[console_scripts]\npython = pkg:main\n"},
		"data python3":  {name: "pkg-1.0.data/scripts/python3", content: "#!python\n"},
		"pyvenv.cfg":    {name: "pkg-1.0.data/data/pyvenv.cfg", content: "home = /tmp\n"},
		"through lib64": {name: "pkg-1.0.data/data/lib64/x", content: "x\n"},
	} {
		t.Run(name, func(t *testing.T) {
			file := writeWheel(t, m)
			_, err := unpack(t, file)
			if err == nil || !strings.Contains(err.Error(), filepath.Base(file)) {
				t.Fatalf("error %v, want one naming the wheel", err)
			}
		})
	}
}
