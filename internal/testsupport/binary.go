package testsupport

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run comfy-image: %v", err)
	}
	return res
}
