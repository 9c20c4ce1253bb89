package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// TestTerminalPushWithModels runs the README's default command (build and
// push app + models images) on a real pseudo-terminal, where progress is
// drawn as bars: one progress area serves the model downloads, the app push
// and the models push without panicking.
func TestTerminalPushWithModels(t *testing.T) {
	v := testsupport.NewVersion(t)
	reg := testsupport.NewRegistry(t)
	ref := reg.Host + "/comfy/demo:v1"
	cmd := exec.Command(testsupport.Binary(t), "build", "--spec", v.SpecFile, "--base", testsupport.SyntheticBase(t),
		"--wheels-dir", v.Wheels, "--push", ref)
	cmd.Dir = v.Dir
	cmd.Env = append(os.Environ(), v.Env(filepath.Join(v.Dir, "cache"))...)
	cmd.Env = append(cmd.Env, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		// Reading the pty ends with EIO once the child has exited.
		io.Copy(&out, tty)
		close(copied)
	}()
	err = cmd.Wait()
	<-copied
	testsupport.RecordOutput(t, "build on a terminal", out.String())
	text := out.String()
	var exit *exec.ExitError
	if errors.As(err, &exit) || err != nil {
		t.Fatalf("build on a terminal: %v\n%s", err, text)
	}
	if strings.Contains(text, "panic") {
		t.Fatalf("build on a terminal panicked:\n%s", text)
	}
	// Bars: a name, byte counters and mpb's bar drawn with "[" "=" "]".
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`upload .*KiB / .*KiB`),
		regexp.MustCompile(`\[=+`),
		regexp.MustCompile(`wrote .*demo:v1@sha256:`),
		regexp.MustCompile(`wrote .*demo:v1-models@sha256:`),
	} {
		if !want.MatchString(text) {
			t.Errorf("terminal output lacks %s:\n%s", want, text)
		}
	}
}

// TestTerminalLockShowsNoRawGitText: on a terminal, the parallel clones of
// lock say one line each when they start and end; git's own progress text
// ("Counting objects:  50% (1/2)\r...") of three clones at once would
// interleave into garbage, so none of it reaches the screen.
func TestTerminalLockShowsNoRawGitText(t *testing.T) {
	v := testsupport.NewVersion(t)
	cmd := exec.Command(testsupport.Binary(t), "lock", "--spec", v.SpecFile)
	cmd.Dir = v.Dir
	cmd.Env = append(os.Environ(), v.Env(filepath.Join(v.Dir, "cache"))...)
	cmd.Env = append(cmd.Env, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, tty)
		close(copied)
	}()
	err = cmd.Wait()
	<-copied
	text := out.String()
	if err != nil {
		t.Fatalf("lock on a terminal: %v\n%s", err, text)
	}
	for _, raw := range []string{"objects:", "Enumerating", "Total ", "pack-reused"} {
		if strings.Contains(text, raw) {
			t.Errorf("terminal output has git's raw progress text %q:\n%s", raw, text)
		}
	}
	if n := strings.Count(text, "cloning "); n != 3 {
		t.Errorf("terminal output says cloning %d times, want once per repository (3):\n%s", n, text)
	}
	testsupport.CheckMessages(t, text)
}
