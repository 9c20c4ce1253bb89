package resolve

import (
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/versions"
)

func pythonSetReqs() []pyenv.Requirements {
	return []pyenv.Requirements{
		{Owner: "ComfyUI", Lines: []string{"alpha", "# comment"}},
		{Owner: "node gguf", Lines: []string{"beta>=1.0", "winonly; sys_platform == 'win32'"}},
		{Owner: "python.requirements", Lines: []string{"torch==2.4.0"}},
	}
}

// The digest of the per-source records is the digest of the lines they
// were made from: a build that reused some records compares equal to one
// that read every source. A source without a requirements file adds
// nothing, as when it was not listed.
func TestRecordsDigestEqualsInputsDigest(t *testing.T) {
	s := &versions.Spec{}
	reqs := pythonSetReqs()
	var recs []versions.LockedRequirements
	for i, q := range reqs {
		recs = append(recs, Record(q, true, "c0ffee", nil, nil))
		if i == 0 {
			recs = append(recs, Record(pyenv.Requirements{Owner: "node empty"}, false, "c0ffee", nil, nil))
		}
	}
	want, _ := InputsDigest(reqs, s, "cp3.11 x86_64")
	if got := RecordsDigest(recs, s, "cp3.11 x86_64"); got != want {
		t.Fatalf("records digest %s, lines digest %s", got, want)
	}
	// Another line in one source changes it.
	reqs[1].Lines = append(reqs[1].Lines, "gamma")
	if moved, _ := InputsDigest(reqs, s, "cp3.11 x86_64"); moved == want {
		t.Fatal("a new requirement line left the inputs digest as it was")
	}
	// So does another target.
	if RecordsDigest(recs, s, "cp3.12 x86_64") == want {
		t.Fatal("another target left the inputs digest as it was")
	}
}

// A lock written before the per-source records keeps its set: its inputs
// digest (of the lines themselves) still matches.
func TestInputsMatchReadsOlderLocks(t *testing.T) {
	s := &versions.Spec{}
	reqs := pythonSetReqs()
	old := legacyInputsDigest(reqs, s, "cp3.11 x86_64")
	if !InputsMatch(reqs, s, "cp3.11 x86_64", old) {
		t.Fatal("an older lock's inputs digest does not match the same lines")
	}
	reqs[0].Lines = []string{"alpha>=2"}
	if InputsMatch(reqs, s, "cp3.11 x86_64", old) {
		t.Fatal("an older lock's inputs digest matches other lines")
	}
}

// The coverage check from records names what the set lacks, as from the
// lines, and leaves out lines with a marker.
func TestCheckRecordsCoverage(t *testing.T) {
	reqs := pythonSetReqs()
	pkgs := []versions.LockedPackage{{Name: "Alpha"}, {Name: "torch"}}
	var recs []versions.LockedRequirements
	for _, q := range reqs {
		recs = append(recs, Record(q, true, "c0ffee", nil, nil))
	}
	fromRecs, fromLines := CheckRecordsCoverage(pkgs, recs, false), CheckCoverage(pkgs, reqs, false)
	if fromRecs == nil || fromLines == nil || fromRecs.Error() != fromLines.Error() {
		t.Fatalf("coverage from records %v, from lines %v", fromRecs, fromLines)
	}
	if !strings.Contains(fromRecs.Error(), "node gguf requires beta>=1.0") || strings.Contains(fromRecs.Error(), "winonly") {
		t.Errorf("coverage error: %v", fromRecs)
	}
	if err := CheckRecordsCoverage(append(pkgs, versions.LockedPackage{Name: "beta"}), recs, false); err != nil {
		t.Errorf("a covering set: %v", err)
	}
}
