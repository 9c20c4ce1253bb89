package snapshot

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/versions"
)

// FromLock is the Manager snapshot of a locked version: the core's commit,
// every git node at its commit (enabled), every registry node at its
// version, and the locked Python set as pip
// freeze would list it (the on-disk set; the image set when only that exists).
func FromLock(l *versions.Lock) *Snapshot {
	s := &Snapshot{
		GitCustomNodes:  map[string]GitNode{},
		CNRCustomNodes:  map[string]string{},
		FileCustomNodes: []FileNode{},
		Pips:            map[string]string{},
	}
	if l.Comfy.Commit != "" {
		c := l.Comfy.Commit
		s.ComfyUI = &c
	}
	for _, n := range l.CustomNodes {
		if n.Registry != "" {
			s.CNRCustomNodes[n.Registry] = n.Version
			continue
		}
		s.GitCustomNodes[repourl.Redact(n.Repo)] = GitNode{Hash: n.Commit}
	}
	pkgs := l.Python.Packages
	if len(pkgs) == 0 {
		pkgs = l.Python.ImagePackages
	}
	for _, p := range pkgs {
		s.Pips[p.Name+"=="+p.Version] = ""
	}
	return s
}

// HasPythonSet reports whether the lock holds a resolved Python set (on
// disk or for images). Without one, FromLock's "pips" is empty: lock pins
// the repositories, realize and build resolve the packages.
func HasPythonSet(l *versions.Lock) bool {
	p := l.Python
	return p.Inputs != "" || p.ImageInputs != "" || len(p.Packages) > 0 || len(p.ImagePackages) > 0
}

// ManagerJSON renders the snapshot byte for byte as Manager saves it:
// Python's json.dump(snapshot, f, indent=4) of the dict get_current_snapshot
// returns (keys in its order, ASCII only, no final newline). Maps, which
// Manager fills in directory and pip freeze order, are sorted.
func (s *Snapshot) ManagerJSON() []byte {
	var b bytes.Buffer
	w := &pyJSON{b: &b}
	w.open('{')
	w.key("comfyui")
	if s.ComfyUI == nil {
		b.WriteString("null")
	} else {
		w.str(*s.ComfyUI)
	}
	w.key("git_custom_nodes")
	w.object(sortedKeys(s.GitCustomNodes), func(k string) {
		n := s.GitCustomNodes[k]
		w.open('{')
		w.key("hash")
		w.str(n.Hash)
		w.key("disabled")
		w.boolean(n.Disabled)
		w.close('}')
	})
	w.key("cnr_custom_nodes")
	w.object(sortedKeys(s.CNRCustomNodes), func(k string) { w.str(s.CNRCustomNodes[k]) })
	w.key("file_custom_nodes")
	if len(s.FileCustomNodes) == 0 {
		b.WriteString("[]")
	} else {
		w.open('[')
		for _, f := range s.FileCustomNodes {
			w.item()
			w.open('{')
			w.key("filename")
			w.str(f.Filename)
			w.key("disabled")
			w.boolean(f.Disabled)
			w.close('}')
		}
		w.close(']')
	}
	w.key("pips")
	w.object(sortedKeys(s.Pips), func(k string) { w.str(s.Pips[k]) })
	w.close('}')
	return b.Bytes()
}

// pyJSON writes JSON the way Python's json module does with indent=4:
// ", " never appears (items end with ",\n"), keys are followed by ": ",
// empty containers are "{}" and "[]".
type pyJSON struct {
	b     *bytes.Buffer
	depth int
	first []bool
}

func (w *pyJSON) open(c byte) {
	w.b.WriteByte(c)
	w.depth++
	w.first = append(w.first, true)
}

func (w *pyJSON) close(c byte) {
	w.depth--
	w.first = w.first[:len(w.first)-1]
	w.b.WriteString("\n" + strings.Repeat("    ", w.depth))
	w.b.WriteByte(c)
}

// item starts the next member of the innermost container.
func (w *pyJSON) item() {
	top := len(w.first) - 1
	if !w.first[top] {
		w.b.WriteByte(',')
	}
	w.first[top] = false
	w.b.WriteString("\n" + strings.Repeat("    ", w.depth))
}

func (w *pyJSON) key(k string) {
	w.item()
	w.str(k)
	w.b.WriteString(": ")
}

func (w *pyJSON) object(keys []string, value func(string)) {
	if len(keys) == 0 {
		w.b.WriteString("{}")
		return
	}
	w.open('{')
	for _, k := range keys {
		w.key(k)
		value(k)
	}
	w.close('}')
}

func (w *pyJSON) boolean(v bool) { fmt.Fprint(w.b, v) }

// str writes a string as json.dumps(ensure_ascii=True) does: the escapes
// \" \\ \n \r \t \b \f, other control and all non-ASCII characters as
// \uXXXX (UTF-16, surrogate pairs above U+FFFF).
func (w *pyJSON) str(s string) {
	w.b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			w.b.WriteString(`\"`)
		case r == '\\':
			w.b.WriteString(`\\`)
		case r == '\n':
			w.b.WriteString(`\n`)
		case r == '\r':
			w.b.WriteString(`\r`)
		case r == '\t':
			w.b.WriteString(`\t`)
		case r == '\b':
			w.b.WriteString(`\b`)
		case r == '\f':
			w.b.WriteString(`\f`)
		case r < 0x20 || (r > 0x7e && r != 0x7f):
			if r > 0xffff {
				r1, r2 := utf16.EncodeRune(r)
				fmt.Fprintf(w.b, `\u%04x\u%04x`, r1, r2)
			} else {
				fmt.Fprintf(w.b, `\u%04x`, r)
			}
		default:
			w.b.WriteRune(r)
		}
	}
	w.b.WriteByte('"')
}
