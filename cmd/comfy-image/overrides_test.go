package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// python.overrides replaces and drops node requirement lines (matched by
// PEP 503 name) before pip sees them; the dry run shows them and the lock
// records each line changed.
func TestPythonOverrides(t *testing.T) {
	s := newSite(t)
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "opencv-python-headless", Version: "4.8"})
	node := s.addNode(t, "Vision", "OpenCV_Python>=4\ncomfyui-frontend-package==1.0\n")
	s.writeSpec(t, node, "")
	res := s.realize(t, filepath.Join(s.dir, "plain"), "--skip-models")
	if res.Code != 1 || !strings.Contains(res.Stderr, "node Vision requires OpenCV_Python>=4") {
		t.Fatalf("without overrides: exit %d, want 1 (no opencv-python wheel)\n%s", res.Code, res.Stderr)
	}
	s.writeSpec(t, node, `"python": {"overrides": {"opencv-python": "opencv-python-headless>=4", "ComfyUI_Frontend_Package": null}},`)
	target := filepath.Join(s.dir, "target")
	plan := s.realize(t, target, "--skip-models", "--dry-run")
	if plan.Code != 0 || !strings.Contains(plan.Stdout, "opencv-python -> opencv-python-headless>=4") || !strings.Contains(plan.Stdout, "ComfyUI_Frontend_Package dropped") {
		t.Fatalf("dry run: exit %d\n%s\n%s", plan.Code, plan.Stdout, plan.Stderr)
	}
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	out, err := exec.Command(filepath.Join(target, ".venv", "bin", "python"), "-c", "import opencv_python_headless as cv; print(cv.VERSION)").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "4.8" {
		t.Fatalf("headless opencv in the venv: %s %v", out, err)
	}
	l := s.lock(t)
	var got []string
	for _, o := range l.Python.Overrides {
		got = append(got, o.Owner+":"+o.File+":"+o.From+"->"+o.To)
	}
	want := "node Vision:requirements.txt:OpenCV_Python>=4->opencv-python-headless>=4,node Vision:requirements.txt:comfyui-frontend-package==1.0->"
	if strings.Join(got, ",") != want {
		t.Fatalf("lock overrides %v\nwant %s", got, want)
	}
}

// python.pre allows pre-releases; the caller's PIP_PRE does not.
func TestPythonPre(t *testing.T) {
	s := newSite(t)
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "delta", Version: "1.0"})
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "delta", Version: "2.0rc1"})
	node := s.addNode(t, "Fresh", "delta\n")
	s.writeSpec(t, node, "")
	plain := filepath.Join(s.dir, "plain")
	res := testsupport.Run(t, s.dir, s.env("PIP_PRE=1"), "realize", "--version-id", "demo", "--target", plain, "--wheels-dir", s.wheels, "--skip-models")
	if res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	if got := deltaIn(t, plain); got != "1.0" {
		t.Fatalf("without python.pre (PIP_PRE=1 in the caller's env) delta %s, want the release 1.0", got)
	}
	s.writeSpec(t, node, `"python": {"pre": true},`)
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	if got := deltaIn(t, target); got != "2.0rc1" {
		t.Fatalf("with python.pre delta %s, want 2.0rc1", got)
	}
}

func deltaIn(t *testing.T, target string) string {
	out, err := exec.Command(filepath.Join(target, ".venv", "bin", "python"), "-c", "import delta; print(delta.VERSION)").CombinedOutput()
	if err != nil {
		t.Fatalf("delta in the venv: %s %v", out, err)
	}
	return strings.TrimSpace(string(out))
}
