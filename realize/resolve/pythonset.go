package resolve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/comfy-image/comfy-image/internal/childproc"
	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/versions"
)

// A locked Python set is kept while what it was resolved from is
// unchanged: the requirement lines of the locked commits, the spec's python
// section and the target Python. Two digests tell: SourcesDigest (cheap:
// the commits) and InputsDigest (the lines themselves, read from the
// checkouts or the mirrors when the commits moved).

// SourcesDigest digests the commits the requirement lines come from, the
// spec's python section and target.
func SourcesDigest(l *versions.Lock, s *versions.Spec, target string) string {
	h := sha256.New()
	py, _ := json.Marshal(s.Python)
	fmt.Fprintf(h, "target=%s\npython=%s\ncomfy=%s\n", target, py, l.Comfy.Commit)
	for _, n := range l.CustomNodes {
		fmt.Fprintf(h, "node %s=%s\n", n.Name, n.Commit)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// InputsDigest digests the requirement lines (by owner), the spec's python
// section and target.
func InputsDigest(reqs []pyenv.Requirements, s *versions.Spec, target string) (string, error) {
	h := sha256.New()
	py, _ := json.Marshal(s.Python)
	fmt.Fprintf(h, "target=%s\npython=%s\n", target, py)
	for _, q := range reqs {
		fmt.Fprintf(h, "%q\n%q\n", q.Owner, strings.TrimSpace(strings.Join(q.Lines, "\n")))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// CheckCoverage fails naming every requirement (and who asks for it) that
// the locked set has no package for. Lines with an environment marker are
// not checked (they may not apply to the target), nor, when the venv sees
// the system site packages, anything: those may satisfy a requirement.
func CheckCoverage(pkgs []versions.LockedPackage, reqs []pyenv.Requirements, systemSite bool) error {
	if systemSite {
		return nil
	}
	have := map[string]bool{}
	for _, p := range pkgs {
		have[pyenv.Normalize(p.Name)] = true
	}
	var missing []string
	for _, q := range reqs {
		for name, line := range pyenv.RequirementNames(strings.Join(q.Lines, "\n")) {
			if !have[name] && !strings.Contains(line, ";") {
				missing = append(missing, fmt.Sprintf("%s requires %s", q.Owner, line))
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	return fmt.Errorf("the locked Python set (%s) does not cover: %s", progress.Count(len(pkgs), "package", "packages"), strings.Join(missing, "; "))
}

// HostTarget names the host Python a venv is made with: its version and
// machine, the same on any host with that Python whatever its path.
func HostTarget(ctx context.Context, python string) (string, error) {
	// Like every child, with an allow-listed environment (no secret) and
	// killed with its group when the work is cancelled.
	out, err := childproc.Command(ctx, python, "-c",
		"import sys, platform; print('cp%d.%d %s' % (sys.version_info[0], sys.version_info[1], platform.machine()))").Output()
	if err != nil {
		return "", fmt.Errorf("%s: cannot tell its version: %w", python, err)
	}
	return strings.TrimSpace(string(out)), nil
}
