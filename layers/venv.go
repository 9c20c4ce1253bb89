package layers

import (
	"archive/zip"
	"bufio"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/comfy-image/comfy-image/realize/pyenv"
)

// VenvTree lays out a virtualenv for a base image's Python at root (for
// example "opt/comfy/.venv") from wheel files, without running Python:
// unpacked wheel trees in site-packages, pyvenv.cfg whose home is the base's
// Python, bin/python* links to it, console scripts with the venv's shebang
// and no .pyc. Close releases the open wheels once the layer is packed.
type VenvTree struct {
	Entries []Entry
	zips    []*zip.ReadCloser
}

// Close closes the wheels the entries read from.
func (v *VenvTree) Close() error {
	for _, z := range v.zips {
		z.Close()
	}
	return nil
}

// BuildVenvTree unpacks wheels into a venv tree for target.
func BuildVenvTree(root string, t pyenv.Target, systemSite bool, wheels []pyenv.Wheel) (*VenvTree, error) {
	root = strings.Trim(root, "/")
	v := &VenvTree{}
	site := path.Join(root, "lib", "python"+t.Version, "site-packages")
	cfg := fmt.Sprintf("home = %s\ninclude-system-site-packages = %v\nversion = %s\n", path.Dir(t.Python), systemSite, t.Version)
	v.Entries = append(v.Entries,
		BytesEntry(path.Join(root, "pyvenv.cfg"), 0o644, []byte(cfg)),
		Entry{Path: path.Join(root, "bin", "python"), Link: t.Python},
		Entry{Path: path.Join(root, "bin", "python3"), Link: "python"},
		Entry{Path: path.Join(root, "bin", "python"+t.Version), Link: "python"},
		Entry{Path: path.Join(root, "lib64"), Link: "lib"},
		Entry{Path: path.Join(root, "include"), Dir: true, Mode: 0o755},
		Entry{Path: site, Dir: true, Mode: 0o755},
	)
	shebang := "#!/" + path.Join(root, "bin", "python") + "\n"
	for _, w := range wheels {
		if err := v.addWheel(w, root, site, shebang); err != nil {
			v.Close()
			return nil, fmt.Errorf("wheel %s: %w", w.Wheel, err)
		}
	}
	return v, nil
}

func (v *VenvTree) addWheel(w pyenv.Wheel, root, site, shebang string) error {
	z, err := zip.OpenReader(w.File)
	if err != nil {
		return err
	}
	v.zips = append(v.zips, z)
	distInfo := ""
	for _, f := range z.File {
		if dir, rest, ok := strings.Cut(f.Name, "/"); ok && strings.HasSuffix(dir, ".dist-info") && rest == "WHEEL" {
			distInfo = dir
		}
	}
	if distInfo == "" {
		return fmt.Errorf("no .dist-info/WHEEL inside")
	}
	dataDir := strings.TrimSuffix(distInfo, ".dist-info") + ".data"
	var record []string
	for _, f := range z.File {
		if strings.HasSuffix(f.Name, "/") || strings.HasSuffix(f.Name, ".pyc") || f.Name == distInfo+"/RECORD" {
			continue
		}
		dest, isScript := wheelDest(f.Name, dataDir, root, site)
		mode := int64(0o644)
		if f.Mode()&0o111 != 0 || isScript {
			mode = 0o755
		}
		entry := Entry{Path: dest, Mode: mode, Size: int64(f.UncompressedSize64), Open: openZip(f)}
		if isScript {
			data, err := readZip(f)
			if err != nil {
				return err
			}
			if strings.HasPrefix(string(data), "#!python") {
				nl := strings.IndexByte(string(data), '\n')
				data = append([]byte(shebang), data[nl+1:]...)
			}
			entry = BytesEntry(dest, 0o755, data)
		}
		v.Entries = append(v.Entries, entry)
		record = append(record, relTo(site, dest))
	}
	scripts, err := consoleScripts(z, distInfo)
	if err != nil {
		return err
	}
	for _, s := range scripts {
		dest := path.Join(root, "bin", s.name)
		data := []byte(shebang + s.body)
		v.Entries = append(v.Entries, BytesEntry(dest, 0o755, data))
		record = append(record, relTo(site, dest))
	}
	v.Entries = append(v.Entries, BytesEntry(path.Join(site, distInfo, "INSTALLER"), 0o644, []byte("comfy-image\n")))
	record = append(record, distInfo+"/INSTALLER", distInfo+"/RECORD")
	sort.Strings(record)
	// RECORD lists the files for uninstall; hashes are left out (allowed for
	// RECORD itself, and pip does not check them on uninstall).
	v.Entries = append(v.Entries, BytesEntry(path.Join(site, distInfo, "RECORD"), 0o644, []byte(strings.Join(record, ",,\n")+",,\n")))
	return nil
}

// wheelDest maps a wheel member to its place in the venv.
func wheelDest(name, dataDir, root, site string) (string, bool) {
	if rest, ok := strings.CutPrefix(name, dataDir+"/"); ok {
		scheme, p, _ := strings.Cut(rest, "/")
		switch scheme {
		case "scripts":
			return path.Join(root, "bin", p), true
		case "purelib", "platlib":
			return path.Join(site, p), false
		case "headers":
			return path.Join(root, "include", p), false
		default: // data
			return path.Join(root, p), false
		}
	}
	return path.Join(site, name), false
}

// relTo is p relative to the folder dir (both slash paths from one root).
func relTo(dir, p string) string {
	a, b := strings.Split(dir, "/"), strings.Split(p, "/")
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return strings.Repeat("../", len(a)-i) + strings.Join(b[i:], "/")
}

func openZip(f *zip.File) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return f.Open() }
}

func readZip(f *zip.File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

type script struct{ name, body string }

// consoleScripts renders the [console_scripts] entry points of a wheel.
func consoleScripts(z *zip.ReadCloser, distInfo string) ([]script, error) {
	var out []script
	for _, f := range z.File {
		if f.Name != distInfo+"/entry_points.txt" {
			continue
		}
		data, err := readZip(f)
		if err != nil {
			return nil, err
		}
		section := ""
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(line, "[") {
				section = strings.Trim(line, "[]")
				continue
			}
			name, target, ok := strings.Cut(line, "=")
			if section != "console_scripts" || !ok {
				continue
			}
			target = strings.TrimSpace(strings.SplitN(target, "[", 2)[0])
			module, attr, _ := strings.Cut(target, ":")
			head := strings.SplitN(attr, ".", 2)[0]
			out = append(out, script{strings.TrimSpace(name), fmt.Sprintf(
				"# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom %s import %s\nif __name__ == \"__main__\":\n    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    sys.exit(%s())\n",
				strings.TrimSpace(module), head, attr)})
		}
	}
	return out, nil
}
