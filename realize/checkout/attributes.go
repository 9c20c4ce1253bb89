package checkout

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitattributes"
)

// maxAttributesSize bounds a .gitattributes file read from a tree; git
// itself ignores larger ones (100 MB), a node has no use for them.
const maxAttributesSize = 1 << 20

// eolAction is what a checkout does to a file's line endings. On Linux with
// core.autocrlf and core.eol unset (the only case this tool has), git only
// changes bytes for eol=crlf: LF becomes CRLF.
type eolAction int

const (
	eolKeep     eolAction = iota
	eolCRLF               // text with eol=crlf: every LF not after a CR
	eolAutoCRLF           // text=auto with eol=crlf: only files detected as text without CR
)

// fileAttrs are the attributes of one file that change what is written.
type fileAttrs struct {
	eol eolAction
	lfs bool // filter=lfs
}

// attrSet resolves attributes as git does: the deepest .gitattributes
// first, and within a file the last matching line first; the first value
// found for an attribute wins; a set macro (binary, or [attr] lines of the
// top-level file) gives its attributes the same priority.
type attrSet struct {
	rules  []gitattributes.MatchAttribute // increasing priority
	macros map[string][]gitattributes.Attribute
}

// binaryMacro is git's built-in "binary": -diff -merge -text.
var binaryMacro = func() []gitattributes.Attribute {
	m, _ := gitattributes.ParseAttributesLine("[attr]binary -diff -merge -text", nil, true)
	return m.Attributes
}()

// loadAttrs reads the .gitattributes files among files (paths below
// prefix, one repository's tree), shallowest first.
func loadAttrs(files map[string]treeEntry, prefix string) (*attrSet, error) {
	var found []string
	for p, e := range files {
		if path.Base(p) == ".gitattributes" && e.mode != filemode.Symlink {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	sort.Slice(found, func(i, j int) bool {
		di, dj := strings.Count(found[i], "/"), strings.Count(found[j], "/")
		if di != dj {
			return di < dj
		}
		return found[i] < found[j]
	})
	set := &attrSet{macros: map[string][]gitattributes.Attribute{"binary": binaryMacro}}
	for _, p := range found {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, prefix), "/")
		var domain []string
		if dir := path.Dir(rel); dir != "." {
			domain = strings.Split(dir, "/")
		}
		data, err := readBlob(files[p], maxAttributesSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if data == nil {
			continue // too large: ignored, as git does
		}
		rules, err := gitattributes.ReadAttributes(bytes.NewReader(data), domain, len(domain) == 0)
		if err != nil {
			// git skips lines it cannot parse; a broken file changes nothing.
			continue
		}
		for _, r := range rules {
			if r.Pattern == nil {
				set.macros[r.Name] = r.Attributes
				continue
			}
			set.rules = append(set.rules, r)
		}
	}
	return set, nil
}

// readBlob reads a blob of at most limit bytes (nil when larger).
func readBlob(e treeEntry, limit int64) ([]byte, error) {
	blob, err := e.repo.BlobObject(e.blob)
	if err != nil {
		return nil, err
	}
	if blob.Size > limit {
		return nil, nil
	}
	rd, err := blob.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

// lookup returns the state of the named attributes for rel (a path
// relative to the repository's root).
func (s *attrSet) lookup(rel string, names ...string) map[string]gitattributes.Attribute {
	out := map[string]gitattributes.Attribute{}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	parts := strings.Split(rel, "/")
	var fill func(attrs []gitattributes.Attribute, depth int)
	fill = func(attrs []gitattributes.Attribute, depth int) {
		for i := len(attrs) - 1; i >= 0; i-- {
			a := attrs[i]
			if _, done := out[a.Name()]; !done && want[a.Name()] {
				out[a.Name()] = a
			}
			if m, ok := s.macros[a.Name()]; ok && a.IsSet() && depth < 8 {
				fill(m, depth+1)
			}
		}
	}
	for i := len(s.rules) - 1; i >= 0 && len(out) < len(names); i-- {
		if s.rules[i].Pattern.Match(parts) {
			fill(s.rules[i].Attributes, 0)
		}
	}
	return out
}

// attrsOf decides, as git's convert.c does on Linux with core.autocrlf
// unset, what a checkout does to rel.
func (s *attrSet) attrsOf(rel string) fileAttrs {
	if s == nil {
		return fileAttrs{}
	}
	a := s.lookup(rel, "text", "crlf", "eol", "filter")
	var fa fileAttrs
	if f, ok := a["filter"]; ok && f.IsValueSet() && f.Value() == "lfs" {
		fa.lfs = true
	}
	text, ok := a["text"]
	if !ok || text.IsUnspecified() {
		text, ok = a["crlf"] // the legacy name
	}
	if ok && text.IsUnset() {
		return fa // -text, binary: never converted, whatever eol says
	}
	auto := ok && text.IsValueSet() && text.Value() == "auto"
	if eol, ok := a["eol"]; ok && eol.IsValueSet() && eol.Value() == "crlf" {
		fa.eol = eolCRLF
		if auto {
			fa.eol = eolAutoCRLF
		}
	}
	// text, text=auto without eol, eol=lf: LF in the working tree, as
	// stored (git normalises on commit, not on checkout).
	return fa
}

// textStats counts what git's gather_stats counts.
type textStats struct {
	nul, loneCR, loneLF, crlf, printable, nonPrintable int
}

func statsOf(b []byte) textStats {
	var s textStats
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				s.crlf++
				i++
			} else {
				s.loneCR++
			}
		case c == '\n':
			s.loneLF++
		case c == 127:
			s.nonPrintable++
		case c < 32:
			switch c {
			case '\b', '\t', 033, 014:
				s.printable++
			case 0:
				s.nul++
				s.nonPrintable++
			default:
				s.nonPrintable++
			}
		default:
			s.printable++
		}
	}
	// A file ending in ^Z (DOS end of file) does not count it.
	if len(b) > 0 && b[len(b)-1] == 032 {
		s.nonPrintable--
	}
	return s
}

// toWorkTree converts a blob's content for the working tree; ok is false
// when nothing changes.
func (a eolAction) toWorkTree(b []byte) (out []byte, ok bool) {
	if a == eolKeep || len(b) == 0 {
		return b, false
	}
	s := statsOf(b)
	if s.loneLF == 0 {
		return b, false
	}
	if a == eolAutoCRLF {
		binary := s.loneCR > 0 || s.nul > 0 || (s.printable>>7) < s.nonPrintable
		if s.loneCR > 0 || s.crlf > 0 || binary {
			return b, false
		}
	}
	out = make([]byte, 0, len(b)+s.loneLF)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out, true
}

// applyAttrs reads the .gitattributes of one repository's files (below
// prefix) and sets, for each file whose line endings git changes, the
// converted content's id; it returns the LFS pointer files it saw.
func applyAttrs(files map[string]treeEntry, prefix string) (lfsPointers []string, err error) {
	set, err := loadAttrs(files, prefix)
	if err != nil || set == nil {
		return nil, err
	}
	for p, e := range files {
		if e.mode == filemode.Symlink {
			continue
		}
		fa := set.attrsOf(strings.TrimPrefix(strings.TrimPrefix(p, prefix), "/"))
		if fa.lfs {
			if ptr, err := readLFSPointer(e); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			} else if ptr != nil {
				lfsPointers = append(lfsPointers, p)
				e.lfs = ptr
			}
		}
		if fa.eol != eolKeep {
			data, err := readBlob(e, 1<<62)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if conv, ok := fa.eol.toWorkTree(data); ok {
				e.eol = fa.eol
				e.work = plumbing.ComputeHash(plumbing.BlobObject, conv)
				e.size = int64(len(conv))
			}
		}
		files[p] = e
	}
	sort.Strings(lfsPointers)
	return lfsPointers, nil
}

// content opens what a checkout writes for e: the blob, with its line
// endings converted when .gitattributes say so, and its size.
func (e treeEntry) content() (io.ReadCloser, int64, error) {
	if e.lfsFile != "" {
		f, err := os.Open(e.lfsFile)
		return f, e.size, err
	}
	blob, err := e.repo.BlobObject(e.blob)
	if err != nil {
		return nil, 0, err
	}
	if e.eol == eolKeep {
		rd, err := blob.Reader()
		return rd, blob.Size, err
	}
	data, err := readBlob(e, 1<<62)
	if err != nil {
		return nil, 0, err
	}
	conv, _ := e.eol.toWorkTree(data)
	return io.NopCloser(bytes.NewReader(conv)), int64(len(conv)), nil
}

// id is the git blob id of what a checkout writes for e.
func (e treeEntry) id() plumbing.Hash {
	if !e.work.IsZero() {
		return e.work
	}
	return e.blob
}
