package versions

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/internal/repourl"
)

// CoverageError lists every part of a spec a lock does not cover.
type CoverageError struct {
	File     string
	Problems []string
	// Repos: some problems are the core's or nodes' (not only models'),
	// which `comfy-image lock` resolves. Each model problem says itself
	// what pins the model.
	Repos bool
}

func (e *CoverageError) Error() string {
	advice := "each says what pins it"
	if e.Repos {
		advice = "`comfy-image lock` without --locked resolves the core and nodes"
	}
	return fmt.Sprintf("%s does not cover the spec (%s; %s):\n  %s",
		e.File, progress.Count(len(e.Problems), "problem", "problems"), advice, strings.Join(e.Problems, "\n  "))
}

// pinAdvice says what pins model m in a lock: `lock --update NAME` asks
// the hub for an hf:// model on a branch or tag (one request); `lock`
// downloads nothing, so any other model (a file, an https or civitai URL,
// a commit or sha256 pin) is pinned by the realize or build that
// downloads it.
func pinAdvice(m Model) string {
	src, err := ParseSource(m.Source)
	if err == nil && src.Scheme == "hf" && m.SHA256 == "" && !fullCommit.MatchString(src.Revision) {
		name := m.Name
		if name == "" {
			name = m.Dest()
		}
		return fmt.Sprintf("`comfy-image lock --update %s` pins it (one request to the hub), as does `comfy-image realize` or `comfy-image build` without --locked", name)
	}
	return "`comfy-image realize` or `comfy-image build` without --locked downloads it and pins its sha256 (lock downloads no model)"
}

var fullCommit = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Covers checks that the lock answers everything spec s asks for: the same
// version, the core and every node (same repository or registry id, the
// ref asked for, the pinned commit or version), and, unless skipModels,
// every model (its sha256 when the spec pins one). Extra entries in the
// lock (a node the spec dropped) are allowed: ForSpec leaves them out.
// file names the lock in the error.
func (l *Lock) Covers(s *Spec, file string, skipModels bool) (err error) {
	var probs []string
	modelProbs := 0
	defer func() {
		if len(probs) > 0 {
			err = &CoverageError{File: file, Problems: probs, Repos: modelProbs < len(probs)}
		}
	}()
	if l.VersionID != s.VersionID {
		probs = append(probs, fmt.Sprintf("the lock is for version %q, the spec %s is %q", l.VersionID, s.File, s.VersionID))
	}
	if p := repoCovers(l.Comfy, s.Comfy); p != "" {
		probs = append(probs, "comfy: "+p)
	}
	for i, n := range s.CustomNodes {
		label := fmt.Sprintf("custom_nodes[%d] (%s)", i, n.Name)
		ln, ok := l.node(n.Name)
		switch {
		case !ok:
			probs = append(probs, label+": not in the lock")
		case n.Registry != "":
			if ln.Registry != n.Registry {
				probs = append(probs, fmt.Sprintf("%s: registry node %s, the lock has %s", label, n.Registry, orNone(ln.Registry, ln.Repo)))
			} else if n.Version != "" && ln.Version != n.Version {
				probs = append(probs, fmt.Sprintf("%s: version %s, the lock has %s", label, n.Version, ln.Version))
			}
		case ln.Registry != "":
			probs = append(probs, fmt.Sprintf("%s: repo %s, the lock has registry node %s", label, repourl.Redact(n.Repo.Repo), ln.Registry))
		default:
			if p := repoCovers(ln.LockedRepo, n.Repo); p != "" {
				probs = append(probs, label+": "+p)
			}
		}
	}
	if !skipModels {
		for i, m := range s.Models {
			lm, ok := l.model(m)
			switch {
			case !ok:
				probs = append(probs, fmt.Sprintf("models[%d] (%s): not in the lock; %s", i, m.Dest(), pinAdvice(m)))
				modelProbs++
			case m.SHA256 != "" && m.SHA256 != lm.SHA256:
				probs = append(probs, fmt.Sprintf("models[%d] (%s): sha256 %s, the lock has %s; %s", i, m.Dest(), m.SHA256, lm.SHA256, pinAdvice(m)))
				modelProbs++
			}
		}
	}
	return nil
}

func orNone(a, b string) string {
	if a != "" {
		return "registry node " + a
	}
	return "repo " + b
}

// repoCovers says what a locked repository lacks for the spec's repo.
func repoCovers(l LockedRepo, r Repo) string {
	switch {
	case l.Repo != repourl.Redact(r.Repo):
		return fmt.Sprintf("repo %s, the lock has %s", repourl.Redact(r.Repo), l.Repo)
	case r.Commit != "" && !strings.HasPrefix(l.Commit, r.Commit):
		return fmt.Sprintf("commit %s, the lock has %s", r.Commit, l.Commit)
	case r.Commit == "" && l.Ref != r.Ref:
		return fmt.Sprintf("ref %s, the lock resolved %s", orDefault(r.Ref), orDefault(l.Ref))
	}
	return ""
}

func orDefault(ref string) string {
	if ref == "" {
		return "the default branch"
	}
	return ref
}

// CommitOf is the commit l holds for the custom node name, or for the
// core when name is ""; "" when l is nil or holds no such node.
func (l *Lock) CommitOf(name string) string {
	if l == nil {
		return ""
	}
	if name == "" {
		return l.Comfy.Commit
	}
	n, _ := l.node(name)
	return n.Commit
}

func (l *Lock) node(name string) (LockedNode, bool) {
	for _, n := range l.CustomNodes {
		if n.Name == name {
			return n, true
		}
	}
	return LockedNode{}, false
}

func (l *Lock) model(m Model) (LockedModel, bool) {
	for _, lm := range l.Models {
		if lm.Source == m.Source && lm.Dest == m.Dest() {
			return lm, true
		}
	}
	return LockedModel{}, false
}

// ForSpec is a copy of the lock with its nodes in the order of the spec
// and only those the spec has (callers index nodes by spec position).
// Call it after Covers.
func (l *Lock) ForSpec(s *Spec) *Lock {
	out := *l
	out.CustomNodes = make([]LockedNode, 0, len(s.CustomNodes))
	for _, n := range s.CustomNodes {
		if ln, ok := l.node(n.Name); ok {
			out.CustomNodes = append(out.CustomNodes, ln)
		}
	}
	return &out
}

// ErrUnknownName is wrapped by Select for a name the spec does not have.
var ErrUnknownName = errors.New("no such core, node or model in the spec")

// Names lists what `lock --update` can name: "comfy", every node's name,
// every model's name and destination, and "python" (the Python sets).
func (s *Spec) Names() map[string]bool {
	names := map[string]bool{"comfy": true, "python": true}
	for _, n := range s.CustomNodes {
		names[n.Name] = true
	}
	for _, m := range s.Models {
		names[m.Dest()] = true
		if m.Name != "" {
			names[m.Name] = true
		}
	}
	return names
}

// CheckNames fails naming every entry of names the spec does not have.
func (s *Spec) CheckNames(names []string) error {
	known := s.Names()
	var bad []string
	for _, n := range names {
		if !known[n] {
			bad = append(bad, n)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	all := make([]string, 0, len(known))
	for n := range known {
		all = append(all, n)
	}
	sort.Strings(all)
	return fmt.Errorf("--update %s: %w (it has %s)", strings.Join(bad, ", "), ErrUnknownName, strings.Join(all, ", "))
}

// Diff lists what changed from old to l, one line per change: commits
// (old and new), registry versions and zip sha256, models (sha256,
// revision), Python packages (versions). old may be nil (a first lock).
func (l *Lock) Diff(old *Lock) []string {
	if old == nil {
		old = &Lock{}
	}
	var out []string
	if c := repoChange(old.Comfy, l.Comfy); c != "" {
		out = append(out, "comfy: "+c)
	}
	oldNodes := map[string]LockedNode{}
	for _, n := range old.CustomNodes {
		oldNodes[n.Name] = n
	}
	for _, n := range l.CustomNodes {
		o, ok := oldNodes[n.Name]
		delete(oldNodes, n.Name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("node %s: added at %s%s", n.Name, n.Commit, versionNote(n)))
		case o.Version != n.Version || o.SHA256 != n.SHA256:
			out = append(out, fmt.Sprintf("node %s: version %s -> %s, sha256 %s -> %s, commit %s -> %s", n.Name,
				orDash(o.Version), orDash(n.Version), orDash(o.SHA256), orDash(n.SHA256), o.Commit, n.Commit))
		default:
			if c := repoChange(o.LockedRepo, n.LockedRepo); c != "" {
				out = append(out, fmt.Sprintf("node %s: %s", n.Name, c))
			}
		}
	}
	for _, name := range sortedKeys(oldNodes) {
		out = append(out, fmt.Sprintf("node %s: removed (was %s)", name, oldNodes[name].Commit))
	}
	oldModels := map[string]LockedModel{}
	for _, m := range old.Models {
		oldModels[m.Dest] = m
	}
	for _, m := range l.Models {
		o, ok := oldModels[m.Dest]
		delete(oldModels, m.Dest)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("model %s: added, sha256 %s", m.Dest, m.SHA256))
		case o.Revision == "" && m.Revision == "" && o.SHA256 != m.SHA256: // a file, or a URL: no revision
			out = append(out, fmt.Sprintf("model %s: sha256 %s -> %s", m.Dest, o.SHA256, m.SHA256))
		case o.SHA256 != m.SHA256 || o.Revision != m.Revision:
			out = append(out, fmt.Sprintf("model %s: sha256 %s -> %s, revision %s -> %s", m.Dest, o.SHA256, m.SHA256, orDash(o.Revision), orDash(m.Revision)))
		}
	}
	for _, dest := range sortedKeys(oldModels) {
		out = append(out, fmt.Sprintf("model %s: removed (was sha256 %s)", dest, oldModels[dest].SHA256))
	}
	out = append(out, packageChanges("python", old.Python.Packages, l.Python.Packages)...)
	return append(out, packageChanges("image python", old.Python.ImagePackages, l.Python.ImagePackages)...)
}

func repoChange(o, n LockedRepo) string {
	switch {
	case o.Commit == n.Commit && o.Repo == n.Repo:
		return ""
	case o.Commit == "":
		return fmt.Sprintf("added at %s (%s)", n.Commit, orDash(n.ResolvedRef))
	case o.Repo != n.Repo:
		return fmt.Sprintf("%s@%s -> %s@%s", o.Repo, o.Commit, n.Repo, n.Commit)
	}
	return fmt.Sprintf("%s -> %s (%s)", o.Commit, n.Commit, orDash(n.ResolvedRef))
}

func versionNote(n LockedNode) string {
	if n.Version == "" {
		return ""
	}
	return fmt.Sprintf(", version %s, sha256 %s", n.Version, n.SHA256)
}

func packageChanges(label string, old, cur []LockedPackage) []string {
	was := map[string]LockedPackage{}
	for _, p := range old {
		was[p.Name] = p
	}
	var out []string
	for _, p := range cur {
		o, ok := was[p.Name]
		delete(was, p.Name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s %s: added %s (sha256 %s)", label, p.Name, p.Version, orDash(p.SHA256)))
		case o.Version != p.Version || o.SHA256 != p.SHA256:
			out = append(out, fmt.Sprintf("%s %s: %s -> %s (sha256 %s -> %s)", label, p.Name, o.Version, p.Version, orDash(o.SHA256), orDash(p.SHA256)))
		}
	}
	for _, name := range sortedKeys(was) {
		out = append(out, fmt.Sprintf("%s %s: removed (was %s)", label, name, was[name].Version))
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
