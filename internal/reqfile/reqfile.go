// Package reqfile reads pip requirements files from untrusted repositories
// (ComfyUI's and custom nodes') and re-emits only what is safe to hand to
// pip: PEP 508 specifiers and https / git+https direct references. Options
// that choose where packages come from (--index-url, --find-links, ...),
// local paths, environment variables (${VAR}: pip expands them, which sends
// secrets wherever the file says) and symlinked files are refused with an
// error naming the owner, the file, the line and how to allow it. `-r
// other.txt` is inlined when other.txt is a regular file of the same
// repository.
package reqfile

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Source reads files of one repository by slash-separated relative path. It
// must refuse symlinks (ErrSymlink) and paths leaving the repository.
type Source interface {
	ReadFile(name string) ([]byte, error)
}

// ErrSymlink is returned by a Source for a file that is (or is reached
// through) a symbolic link.
var ErrSymlink = errors.New("is a symlink")

// Line is one accepted requirement.
type Line struct {
	// Text is the requirement as pip gets it ("numpy>=1.25", "x @ https://...").
	Text string
	// Name is its PEP 503 normalized distribution name ("" for a bare URL
	// that does not say it).
	Name string
	// File and Num say where it came from.
	File string
	Num  int
}

// Error is a refused requirements file or line. It is bad input (exit 2).
type Error struct {
	Owner, File string
	Line        int // 0 for the whole file
	Problem     string
	Hint        string
}

func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s line %d", e.File, e.Line)
	}
	msg := fmt.Sprintf("%s: %s: %s", e.Owner, where, e.Problem)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// BadInput marks the error as the input's fault (exit code 2).
func (e *Error) BadInput() bool { return true }

const (
	hintIndex    = `to use another package index, put it in the spec's python.index_urls; to replace this line, add the requirement to python.overrides`
	hintOverride = `to replace the requirement, add it to the spec's python.overrides (name -> replacement line, or null to drop it)`
	maxDepth     = 8
)

// Parse reads file (a slash path in src) and the files it includes with -r.
// owner names the source in errors ("node gguf").
func Parse(src Source, owner, file string) ([]Line, error) {
	return parse(src, owner, file, 0, map[string]bool{})
}

// parse reads file and its includes. done holds the files already inlined:
// an include of one of them adds nothing new and is skipped, so each file
// is read once however often (and however deep) it is included; a few
// small files including each other many times over could otherwise make
// billions of reads. A loop never completes a file, so maxDepth stops it.
func parse(src Source, owner, file string, depth int, done map[string]bool) ([]Line, error) {
	if depth > maxDepth {
		return nil, &Error{Owner: owner, File: file, Problem: "-r includes nest too deep (a loop?)"}
	}
	data, err := src.ReadFile(file)
	if err != nil {
		problem := err.Error()
		if errors.Is(err, ErrSymlink) {
			problem = "is a symlink; a requirements file must be a regular file of the repository"
		}
		return nil, &Error{Owner: owner, File: file, Problem: problem}
	}
	var out []Line
	// pip decodes a file starting with a byte order mark without it.
	for _, l := range logicalLines(strings.TrimPrefix(string(data), "\ufeff")) {
		fail := func(problem, hint string) error {
			return &Error{Owner: owner, File: file, Line: l.num, Problem: problem, Hint: hint}
		}
		if strings.HasPrefix(l.text, "-") {
			if _, err := include(l.text); err != nil {
				return nil, fail(err.Error(), hintFor(l.text))
			}
		}
		if strings.Contains(l.text, "${") {
			return nil, fail(fmt.Sprintf("%q holds ${...}, which pip would fill from the environment (secrets)", l.text), hintOverride)
		}
		if strings.HasPrefix(l.text, "-") {
			inc, err := include(l.text)
			if err != nil {
				return nil, fail(err.Error(), hintFor(l.text))
			}
			target, ok := inRepo(file, inc)
			if !ok {
				return nil, fail(fmt.Sprintf("-r %s: expected a requirements file inside the same repository", inc), hintOverride)
			}
			if done[target] {
				continue
			}
			more, err := parse(src, owner, target, depth+1, done)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
			continue
		}
		name, err := Check(l.text)
		if err != nil {
			return nil, fail(err.Error(), hintOverride)
		}
		out = append(out, Line{Text: l.text, Name: name, File: file, Num: l.num})
	}
	done[file] = true
	return out, nil
}

type logical struct {
	text string
	num  int
}

var comment = regexp.MustCompile(`(^|\s+)#.*$`)

// logicalLines joins continued lines (trailing backslash), drops comments
// and blank lines, the way pip reads a requirements file.
func logicalLines(text string) []logical {
	var out []logical
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(raw, `\`) && !comment.MatchString(raw) {
			cur.WriteString(strings.TrimSuffix(raw, `\`))
			continue
		}
		cur.WriteString(raw)
		line := strings.TrimSpace(comment.ReplaceAllString(cur.String(), ""))
		cur.Reset()
		if line != "" {
			out = append(out, logical{text: line, num: start})
		}
	}
	if line := strings.TrimSpace(comment.ReplaceAllString(cur.String(), "")); line != "" {
		out = append(out, logical{text: line, num: start})
	}
	return out
}

// include returns the file named by a -r / --requirement line, or an error
// for every other option.
func include(line string) (string, error) {
	opt, arg := splitOption(line)
	switch opt {
	case "-r", "--requirement":
		if arg == "" {
			return "", fmt.Errorf("%s without a file", opt)
		}
		return arg, nil
	case "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index":
		return "", fmt.Errorf("%s is not allowed: a node may not choose where packages come from", opt)
	case "-e", "--editable":
		return "", fmt.Errorf("%s (an editable or local install) is not allowed", opt)
	case "--pre":
		return "", fmt.Errorf("--pre is not allowed in a requirements file; the spec's python.pre allows pre-releases")
	}
	return "", fmt.Errorf("option %s is not allowed in a requirements file", opt)
}

func hintFor(line string) string {
	opt, _ := splitOption(line)
	switch opt {
	case "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index":
		return hintIndex
	}
	return hintOverride
}

// splitOption splits "-r x", "-rx", "--requirement=x", "--requirement x".
func splitOption(line string) (opt, arg string) {
	if strings.HasPrefix(line, "--") {
		opt, arg, ok := strings.Cut(line, "=")
		if ok && !strings.ContainsAny(opt, " \t") {
			return opt, strings.TrimSpace(arg)
		}
		f := strings.Fields(line)
		return f[0], strings.TrimSpace(strings.TrimPrefix(line, f[0]))
	}
	if len(line) > 2 {
		return line[:2], strings.TrimSpace(line[2:])
	}
	return line, ""
}

// inRepo resolves an included file relative to the including one; ok is
// false for an absolute path, a URL or a path leaving the repository.
func inRepo(from, inc string) (string, bool) {
	if strings.Contains(inc, ":") || strings.HasPrefix(inc, "~") || path.IsAbs(inc) || strings.Contains(inc, `\`) {
		return "", false
	}
	p := path.Join(path.Dir(from), inc)
	return p, filepath.IsLocal(filepath.FromSlash(p))
}

var (
	nameRun = regexp.MustCompile(`[-_.]+`)
	// spec508 is a name, extras and version specifiers (PEP 508 without
	// the URL form), then an optional environment marker.
	spec508 = regexp.MustCompile(`^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[A-Za-z0-9._,\s-]*\])?\s*(\(?\s*(?:(?:===|==|!=|<=|>=|~=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)*\)?)\s*(;[A-Za-z0-9_.'"\s<>=!~(),*+-]*)?$`)
	// direct is "name[extras] @ URL" with an optional marker after "; ".
	direct  = regexp.MustCompile(`^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[A-Za-z0-9._,\s-]*\])?\s*@\s*(\S+)(\s+;[A-Za-z0-9_.'"\s<>=!~(),*+-]*)?$`)
	hashOpt = regexp.MustCompile(`\s+--hash[= ]sha(256|384|512):[0-9a-fA-F]+`)
	eggName = regexp.MustCompile(`(?:^|&)egg=([A-Za-z0-9][A-Za-z0-9._-]*)`)
)

// Normalize is the PEP 503 form of a distribution name.
func Normalize(name string) string { return strings.ToLower(nameRun.ReplaceAllString(name, "-")) }

// Check accepts one requirement line and returns its normalized name: a
// PEP 508 specifier, "name @ https://..." or "name @ git+https://...", or a
// bare https / git+https URL (name from #egg= or the wheel's file name,
// else ""). Local paths, other URL schemes and per-line options other than
// --hash are refused.
func Check(line string) (string, error) {
	line = strings.TrimSpace(hashOpt.ReplaceAllString(line, ""))
	if i := strings.IndexFunc(line, lineBreaking); i >= 0 {
		return "", fmt.Errorf("%q holds a control character (pip would split the line there)", line)
	}
	if strings.Contains(line, "${") {
		return "", fmt.Errorf("%q holds ${...}, which pip would fill from the environment (secrets)", line)
	}
	if strings.Contains(line, " -") || strings.HasPrefix(line, "-") {
		return "", fmt.Errorf("%q: per-requirement options other than --hash are not allowed", line)
	}
	if looksLocal(line) {
		return "", fmt.Errorf("%q is a local path, which is not allowed (it would read files outside the repository)", line)
	}
	if m := spec508.FindStringSubmatch(line); m != nil {
		return Normalize(m[1]), nil
	}
	if m := direct.FindStringSubmatch(line); m != nil {
		if err := checkURL(m[3]); err != nil {
			return "", fmt.Errorf("%q: %v", line, err)
		}
		return Normalize(m[1]), nil
	}
	if strings.Contains(line, "://") && !strings.ContainsAny(line, " \t") {
		if err := checkURL(line); err != nil {
			return "", fmt.Errorf("%q: %v", line, err)
		}
		return urlName(line), nil
	}
	return "", fmt.Errorf("%q is not a requirement: expected a PEP 508 specifier such as name>=1.0, or name @ https://host/path", line)
}

// lineBreaking reports control characters and the separators Python's
// str.splitlines breaks on.
func lineBreaking(r rune) bool {
	return (r < 0x20 && r != '\t') || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029
}

func looksLocal(line string) bool {
	l := strings.ToLower(line)
	return strings.HasPrefix(l, ".") || strings.HasPrefix(l, "/") || strings.HasPrefix(l, "~") ||
		strings.HasPrefix(l, "file:") || strings.Contains(l, "@ file:") || strings.Contains(l, "@file:") ||
		isArchiveName(l)
}

// archiveExtensions are the endings pip takes for a local archive: a line
// "x-1.0-py3-none-any.whl" or "pkg.zip" installs that file from pip's
// working directory (the user's) when it is there, whatever the index.
var archiveExtensions = []string{".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tlz", ".tar.lz", ".tar.lzma"}

// isArchiveName reports a requirement (lowercase) whose first word ends
// like an archive file and is not a URL.
func isArchiveName(l string) bool {
	word := strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == '\t' || r == ';' || r == '[' })
	if len(word) == 0 || strings.Contains(word[0], "://") {
		return false
	}
	for _, ext := range archiveExtensions {
		if strings.HasSuffix(word[0], ext) {
			return true
		}
	}
	return false
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL: %v", err)
	}
	if u.Scheme != "https" && u.Scheme != "git+https" {
		return fmt.Errorf("URL scheme %q is not allowed; expected https:// or git+https://", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("URL without a host")
	}
	return nil
}

func urlName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if m := eggName.FindStringSubmatch(u.Fragment); m != nil {
		return Normalize(m[1])
	}
	base := path.Base(u.Path)
	if strings.HasSuffix(base, ".whl") {
		if name, _, ok := strings.Cut(base, "-"); ok {
			return Normalize(name)
		}
	}
	return ""
}

// DirSource reads a checked-out repository on disk. Every path component is
// checked with Lstat: a symlink anywhere on the way is refused, so a file
// outside the folder is never read.
type DirSource string

// ReadFile implements Source.
func (d DirSource) ReadFile(name string) ([]byte, error) {
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return nil, fmt.Errorf("%s: path leaves the repository", name)
	}
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, err
	}
	defer root.Close()
	parts := strings.Split(name, "/")
	for i := range parts {
		st, err := root.Lstat(path.Join(parts[:i+1]...))
		if err != nil {
			return nil, err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return nil, ErrSymlink
		}
		if i == len(parts)-1 && !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", name)
		}
	}
	return root.ReadFile(name)
}

// Applied is one requirement line that python.overrides replaced or
// dropped (To is "" when dropped).
type Applied struct {
	Owner, File string
	Num         int
	From, To    string
}

// Override applies overrides (normalized or not name -> replacement line,
// nil to drop) to lines by PEP 503 name. Replacements must pass Check
// (the spec's validation does that).
func Override(owner string, lines []Line, overrides map[string]*string) ([]Line, []Applied) {
	if len(overrides) == 0 {
		return lines, nil
	}
	byName := map[string]*string{}
	for k, v := range overrides {
		byName[Normalize(k)] = v
	}
	var out []Line
	var applied []Applied
	for _, l := range lines {
		repl, ok := byName[l.Name]
		if !ok || l.Name == "" {
			out = append(out, l)
			continue
		}
		a := Applied{Owner: owner, File: l.File, Num: l.Num, From: l.Text}
		if repl != nil {
			name, _ := Check(*repl)
			a.To = *repl
			out = append(out, Line{Text: *repl, Name: name, File: l.File, Num: l.Num})
		}
		applied = append(applied, a)
	}
	return out, applied
}
