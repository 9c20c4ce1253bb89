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
// the commits) and InputsDigest (the lines, read from the checkouts or the
// mirrors when the commits moved; with per-source records only the sources
// whose commit moved are read again, see RecordsDigest).

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
// section and target: the digest of their records (see RecordsDigest).
func InputsDigest(reqs []pyenv.Requirements, s *versions.Spec, target string) (string, error) {
	recs := make([]versions.LockedRequirements, len(reqs))
	for i, q := range reqs {
		recs[i] = versions.LockedRequirements{Owner: q.Owner, Lines: linesDigest(q)}
	}
	return RecordsDigest(recs, s, target), nil
}

// RecordsDigest digests the recorded requirement lines (by owner, sources
// without a requirements file left out), the spec's python section and
// target. It equals InputsDigest of the lines the records were made from,
// so a build that read again only the sources whose commit moved gets the
// digest of reading them all.
func RecordsDigest(recs []versions.LockedRequirements, s *versions.Spec, target string) string {
	h := sha256.New()
	py, _ := json.Marshal(s.Python)
	fmt.Fprintf(h, "inputs by source\ntarget=%s\npython=%s\n", target, py)
	for _, r := range recs {
		if r.Lines != "" {
			fmt.Fprintf(h, "%q %s\n", r.Owner, r.Lines)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// InputsMatch reports whether recorded is the inputs digest of reqs, as
// InputsDigest makes it or as locks written before the per-source records
// did (those stay readable).
func InputsMatch(reqs []pyenv.Requirements, s *versions.Spec, target, recorded string) bool {
	if d, _ := InputsDigest(reqs, s, target); d == recorded {
		return true
	}
	return legacyInputsDigest(reqs, s, target) == recorded
}

// legacyInputsDigest is the inputs digest of locks without per-source
// records: the lines themselves rather than their digests.
func legacyInputsDigest(reqs []pyenv.Requirements, s *versions.Spec, target string) string {
	h := sha256.New()
	py, _ := json.Marshal(s.Python)
	fmt.Fprintf(h, "target=%s\npython=%s\n", target, py)
	for _, q := range reqs {
		fmt.Fprintf(h, "%q\n%q\n", q.Owner, strings.TrimSpace(strings.Join(q.Lines, "\n")))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func linesDigest(q pyenv.Requirements) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(strings.Join(q.Lines, "\n"))))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// OverridesDigest digests the spec's python.overrides: a source's record
// holds lines loaded with them, and is reused only with the same ones.
func OverridesDigest(overrides map[string]*string) string {
	data, _ := json.Marshal(overrides) // map keys sorted: stable
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Record is the record of the lines q that owner's source gave at commit
// (found false: it has no requirements file), loaded with overrides, which
// changed applied.
func Record(q pyenv.Requirements, found bool, commit string, applied []versions.AppliedOverride, overrides map[string]*string) versions.LockedRequirements {
	r := versions.LockedRequirements{Owner: q.Owner, Commit: commit, OverridesDigest: OverridesDigest(overrides), Overrides: applied}
	if !found {
		return r
	}
	r.Lines = linesDigest(q)
	for _, line := range pyenv.RequirementNames(strings.Join(q.Lines, "\n")) {
		if !strings.Contains(line, ";") {
			r.Requires = append(r.Requires, line)
		}
	}
	sort.Strings(r.Requires)
	return r
}

// CheckCoverage fails naming every requirement (and who asks for it) that
// the locked set has no package for. Lines with an environment marker are
// not checked (they may not apply to the target), nor, when the venv sees
// the system site packages, anything: those may satisfy a requirement.
func CheckCoverage(pkgs []versions.LockedPackage, reqs []pyenv.Requirements, systemSite bool) error {
	recs := make([]versions.LockedRequirements, len(reqs))
	for i, q := range reqs {
		recs[i] = Record(q, true, "", nil, nil)
	}
	return CheckRecordsCoverage(pkgs, recs, systemSite)
}

// CheckRecordsCoverage is CheckCoverage from the sources' records.
func CheckRecordsCoverage(pkgs []versions.LockedPackage, recs []versions.LockedRequirements, systemSite bool) error {
	if systemSite {
		return nil
	}
	have := map[string]bool{}
	for _, p := range pkgs {
		have[pyenv.Normalize(p.Name)] = true
	}
	var missing []string
	for _, r := range recs {
		for name, line := range pyenv.RequirementNames(strings.Join(r.Requires, "\n")) {
			if !have[name] {
				missing = append(missing, fmt.Sprintf("%s requires %s", r.Owner, line))
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
