package testsupport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the comfy-image command once per test process and returns
// its path, so tests run the tool as a user does.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "comfy-image-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "comfy-image")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/comfy-image")
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(string(msg))
		}
	})
	if buildErr != nil {
		t.Fatalf("build comfy-image: %v", buildErr)
	}
	return binPath
}

// Result is what a run of the command printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the built command in dir with extra environment variables.
func Run(t testing.TB, dir string, env []string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	RecordOutput(t, strings.Join(args, " "), res.Stdout, res.Stderr)
	CheckMessages(t, res.Stderr)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run comfy-image: %v", err)
	}
	return res
}

// Proc is a running comfy-image whose stderr a test watches.
type Proc struct {
	Cmd *exec.Cmd
	// Lines receives stderr line by line; closed at exit.
	Lines chan string
}

// Start runs the built command without waiting for it.
func Start(t testing.TB, dir string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd, Lines: make(chan string, 1024)}
	var seen strings.Builder
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer close(p.Lines)
		sc := bufio.NewScanner(stderr)
		kept := OutputLog(t, strings.Join(args, " "))
		for sc.Scan() {
			fmt.Fprintln(kept, sc.Text())
			seen.WriteString(sc.Text() + "\n")
			select {
			case p.Lines <- sc.Text():
			default: // nobody is reading any more
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		<-scanned
		CheckMessages(t, seen.String())
	})
	return p
}

// leaks are what no message of the tool may show: a Go map or nil printed
// with %v, NUL bytes (from git), and the cache's temporary paths (partial
// downloads, packing layers, half mirrors, lock files being written, pip's
// work folders).
var leaks = []struct {
	what string
	re   *regexp.Regexp
}{
	{"a Go map", regexp.MustCompile(`map\[`)},
	{"<nil>", regexp.MustCompile(`<nil>`)},
	{"a NUL byte", regexp.MustCompile("\x00")},
	{"a temporary path of the cache", regexp.MustCompile(`models/tmp/|/\.pack-|/\.download-|\.tmp-[0-9]+|comfy-pip-`)},
}

// CheckMessages fails the test when what the tool printed shows something
// of leaks. Run and Start call it on every stderr they capture.
func CheckMessages(t testing.TB, stderr string) {
	t.Helper()
	for _, l := range leaks {
		if loc := l.re.FindStringIndex(stderr); loc != nil {
			from, to := max(0, loc[0]-80), min(len(stderr), loc[1]+80)
			t.Errorf("stderr shows %s: %q", l.what, stderr[from:to])
		}
	}
}

// KillWhen sends SIGKILL a delay after a stderr line contains marker and
// waits for the process to end; it fails the test if the process ends first.
func (p *Proc) KillWhen(t testing.TB, marker string, delay time.Duration) {
	t.Helper()
	for line := range p.Lines {
		if strings.Contains(line, marker) {
			time.Sleep(delay)
			p.Cmd.Process.Signal(syscall.SIGKILL)
			p.Cmd.Wait()
			return
		}
	}
	p.Cmd.Wait()
	t.Fatalf("process ended before printing %q", marker)
}
