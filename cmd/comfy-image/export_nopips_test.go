package main

import (
	"strings"
	"testing"
)

// A version locked but never realized or built has no Python set: its
// snapshot's "pips" is empty, and export says so on stderr (why, and what
// to run) instead of writing the empty list silently.
func TestExportSnapshotWithoutPythonSetSaysSo(t *testing.T) {
	p := newProject(t)
	if res := p.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatalf("lock exit %d\n%s", res.Code, res.Stderr)
	}
	if l := p.lock(t); len(l.Python.Packages) != 0 || l.Python.Inputs != "" {
		t.Fatalf("the lock already has a Python set: %+v", l.Python)
	}
	res := p.run(t, "export", "snapshot", "--version-id", "demo")
	if res.Code != 0 || !strings.Contains(res.Stdout, `"pips": {}`) {
		t.Fatalf("export exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	for _, want := range []string{"no pip list", "no Python set is locked for demo yet", "comfy-image realize --version-id demo", "comfy-image build --version-id demo"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.Stderr)
		}
	}
	if strings.Contains(res.Stdout, "no pip list") {
		t.Errorf("the warning went into the snapshot on stdout:\n%s", res.Stdout)
	}
}
