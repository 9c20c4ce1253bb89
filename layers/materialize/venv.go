package materialize

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"hash"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strconv"
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
	fixed := len(v.Entries)
	var starts []int // where each wheel's entries begin
	for _, w := range wheels {
		starts = append(starts, len(v.Entries))
		if err := v.addWheel(w, root, site, shebang); err != nil {
			v.Close()
			return nil, fmt.Errorf("wheel %s: %w", wheelName(w), err)
		}
	}
	if i, err := checkVenvPaths(v.Entries, fixed); err != nil {
		v.Close()
		w := wheels[sort.SearchInts(starts, i+1)-1]
		return nil, fmt.Errorf("wheel %s: %w", wheelName(w), err)
	}
	return v, nil
}

// checkVenvPaths refuses a wheel's entry (entries[fixed:]) that replaces
// one of the venv's own (pyvenv.cfg, the interpreter links, lib64, ...)
// or that puts a file where the tree has a folder: a console script named
// "." would make bin/ a file, one named "python" would replace the
// interpreter, a file below lib64 (a link) would be written through it.
// It returns the index of the offending wheel entry.
func checkVenvPaths(entries []Entry, fixed int) (int, error) {
	own := map[string]bool{}
	notDir := map[string]int{}
	for i, e := range entries {
		if i < fixed {
			own[e.Path] = true
		}
		if !e.Dir {
			notDir[e.Path] = i
		}
	}
	for i, e := range entries {
		if i >= fixed && own[e.Path] {
			return i, fmt.Errorf("%s would replace the venv's own %s", e.Path, path.Base(e.Path))
		}
		for p := path.Dir(e.Path); p != "." && p != "/"; p = path.Dir(p) {
			if j, ok := notDir[p]; ok {
				return max(i, j), fmt.Errorf("%s would be written below %s, which is not a folder", e.Path, p)
			}
		}
	}
	return 0, nil
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
	rec, err := readRecord(z, wheelName(w), distInfo)
	if err != nil {
		return err
	}
	dataDir := strings.TrimSuffix(distInfo, ".dist-info") + ".data"
	var record []string
	for _, f := range z.File {
		if strings.HasSuffix(f.Name, "/") || strings.HasSuffix(f.Name, ".pyc") || unrecorded(f.Name, distInfo) {
			continue
		}
		dest, isScript, err := wheelDest(f.Name, dataDir, root, site)
		if err != nil {
			return err
		}
		m, err := rec.member(f)
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if f.Mode()&0o111 != 0 || isScript {
			mode = 0o755
		}
		entry := Entry{Path: dest, Mode: mode, Size: int64(f.UncompressedSize64), Open: m.open}
		if isScript {
			data, err := m.read()
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
	scripts, err := consoleScripts(z, rec, distInfo)
	if err != nil {
		return err
	}
	for _, s := range scripts {
		dest := path.Join(root, "bin", s.name)
		if !filepath.IsLocal(s.name) || strings.Contains(s.name, "/") {
			return fmt.Errorf("%s/entry_points.txt: console script name %q is not a plain file name", distInfo, s.name)
		}
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

// unrecorded reports the members RECORD cannot list: itself and its
// signatures. They are not installed as they are (RECORD is rewritten).
func unrecorded(name, distInfo string) bool {
	switch name {
	case distInfo + "/RECORD", distInfo + "/RECORD.jws", distInfo + "/RECORD.p7s":
		return true
	}
	return false
}

// wheelDest maps a wheel member to its place in the venv. A member whose
// name is absolute or holds a ".." component, or that lands outside the
// folder of its scheme, is refused: a wheel writes only into the venv.
func wheelDest(name, dataDir, root, site string) (string, bool, error) {
	if err := checkMemberName(name); err != nil {
		return "", false, err
	}
	base, rel, isScript := site, name, false
	if rest, ok := strings.CutPrefix(name, dataDir+"/"); ok {
		scheme, p, _ := strings.Cut(rest, "/")
		rel = p
		switch scheme {
		case "scripts":
			base, isScript = path.Join(root, "bin"), true
		case "purelib", "platlib":
			base = site
		case "headers":
			base = path.Join(root, "include")
		case "data":
			base = root
		default:
			return "", false, fmt.Errorf("member %q: unknown scheme %q (expected purelib, platlib, headers, scripts or data)", name, scheme)
		}
	}
	dest := path.Join(base, rel)
	if !strings.HasPrefix(dest, base+"/") {
		return "", false, fmt.Errorf("member %q lands outside %s", name, base)
	}
	return dest, isScript, nil
}

// checkMemberName refuses names a zip may hold but a wheel may not: empty,
// absolute, with a ".." component (either separator) or a NUL.
func checkMemberName(name string) error {
	if name == "" || strings.ContainsRune(name, 0) {
		return fmt.Errorf("member %q: not a file name", name)
	}
	if path.IsAbs(name) || strings.HasPrefix(name, `\`) || (len(name) > 1 && name[1] == ':') {
		return fmt.Errorf("member %q: absolute path", name)
	}
	for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return fmt.Errorf("member %q: holds \"..\"", name)
		}
	}
	return nil
}

// wheelName is the wheel's file name, for errors.
func wheelName(w pyenv.Wheel) string {
	if w.Wheel != "" {
		return w.Wheel
	}
	return filepath.Base(w.File)
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

// record is a wheel's RECORD: each member's hash (sha256, or a stronger
// sha384/sha512; urlsafe base64, no padding) and size.
type record struct {
	wheel string
	lines map[string]recordLine
}

type recordLine struct {
	algo   string
	digest []byte
	size   int64
}

// recordHashes are the hashes RECORD may use (PEP 427: sha256 or better).
var recordHashes = map[string]func() hash.Hash{"sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New}

func readRecord(z *zip.ReadCloser, wheel, distInfo string) (record, error) {
	name := distInfo + "/RECORD"
	var f *zip.File
	for _, zf := range z.File {
		if zf.Name == name {
			f = zf
		}
	}
	if f == nil {
		return record{}, fmt.Errorf("no %s inside", name)
	}
	rc, err := f.Open()
	if err != nil {
		return record{}, fmt.Errorf("%s: %w", name, err)
	}
	defer rc.Close()
	rows, err := csv.NewReader(rc).ReadAll()
	if err != nil {
		return record{}, fmt.Errorf("%s: %w", name, err)
	}
	rec := record{wheel: wheel, lines: map[string]recordLine{}}
	for _, row := range rows {
		if len(row) != 3 {
			return record{}, fmt.Errorf("%s: line %q: expected path,hash,size", name, strings.Join(row, ","))
		}
		line := recordLine{size: -1}
		if algo, digest, ok := strings.Cut(row[1], "="); ok && recordHashes[algo] != nil {
			line.algo = algo
			line.digest, _ = base64.RawURLEncoding.DecodeString(strings.TrimRight(digest, "="))
		}
		if row[2] != "" {
			if line.size, err = strconv.ParseInt(row[2], 10, 64); err != nil {
				return record{}, fmt.Errorf("%s: line for %q: size %q is not a number", name, row[0], row[2])
			}
		}
		rec.lines[row[0]] = line
	}
	return rec, nil
}

// member checks f against RECORD (listed, with a hash and its size) and
// returns it ready to be read with its hash checked.
func (r record) member(f *zip.File) (zipMember, error) {
	line, ok := r.lines[f.Name]
	switch {
	case !ok:
		return zipMember{}, fmt.Errorf("member %q is not listed in RECORD", f.Name)
	case line.algo == "" || len(line.digest) != recordHashes[line.algo]().Size():
		return zipMember{}, fmt.Errorf("member %q has no sha256 (or sha384, sha512) hash in RECORD", f.Name)
	case line.size >= 0 && uint64(line.size) != f.UncompressedSize64:
		return zipMember{}, fmt.Errorf("member %q is %d bytes, RECORD says %d", f.Name, f.UncompressedSize64, line.size)
	}
	return zipMember{f: f, wheel: r.wheel, algo: line.algo, digest: line.digest}, nil
}

// zipMember is a wheel member whose content must hash to its RECORD line.
type zipMember struct {
	f      *zip.File
	wheel  string // named in errors met while packing, after BuildVenvTree
	algo   string
	digest []byte
}

// open streams the member; reading it to the end fails, naming the
// member, when its bytes are not those RECORD lists.
func (m zipMember) open() (io.ReadCloser, error) {
	rc, err := m.f.Open()
	if err != nil {
		return nil, fmt.Errorf("wheel %s: member %q: %w", m.wheel, m.f.Name, err)
	}
	return &checkedReader{rc: rc, h: recordHashes[m.algo](), m: m}, nil
}

func (m zipMember) read() ([]byte, error) {
	rc, err := m.open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

type checkedReader struct {
	rc io.ReadCloser
	h  hash.Hash
	m  zipMember
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF && !bytes.Equal(c.h.Sum(nil), c.m.digest) {
		return n, fmt.Errorf("wheel %s: member %q does not match its %s in RECORD", c.m.wheel, c.m.f.Name, c.m.algo)
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("wheel %s: member %q: %w", c.m.wheel, c.m.f.Name, err)
	}
	return n, err
}

func (c *checkedReader) Close() error { return c.rc.Close() }

type script struct{ name, body string }

// consoleScripts renders the [console_scripts] entry points of a wheel.
func consoleScripts(z *zip.ReadCloser, rec record, distInfo string) ([]script, error) {
	var out []script
	for _, f := range z.File {
		if f.Name != distInfo+"/entry_points.txt" {
			continue
		}
		m, err := rec.member(f)
		if err != nil {
			return nil, err
		}
		data, err := m.read()
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
