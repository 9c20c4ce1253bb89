package testsupport

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The sentinel-secret sweep (make sweep, .ci/sweep) runs the whole suite
// with one random secret in COMFY_TEST_SECRET, HF_TOKEN and
// CIVITAI_API_TOKEN, and COMFY_TEST_KEEP naming a folder; afterwards it
// greps everything under that folder for the secret. These helpers make
// the tests use that secret where a secret goes and keep what they wrote.
const (
	// SecretEnv holds the sweep's secret.
	SecretEnv = "COMFY_TEST_SECRET"
	// KeepEnv names the folder where tests keep what they wrote.
	KeepEnv = "COMFY_TEST_KEEP"
	// SecretInputsFile (under KeepEnv) lists, one path a line, the files a
	// test wrote the secret into itself as the tool's input.
	SecretInputsFile = "secret-inputs"
)

// Secret is the value tests put wherever a secret goes (a token, a
// registry password, credentials in a URL): the sweep's sentinel, or a
// fixed stand-in outside the sweep.
func Secret() string {
	if s := os.Getenv(SecretEnv); s != "" {
		return s
	}
	return "comfy_test_secret_5e1f7a"
}

// TempDir is t.TempDir(), except under the sweep (COMFY_TEST_KEEP set):
// then the folder is made under COMFY_TEST_KEEP and kept after the test,
// so the sweep can read every file written there (caches, targets,
// layouts, tarballs, registry storage).
func TempDir(t testing.TB) string {
	t.Helper()
	keep := os.Getenv(KeepEnv)
	if keep == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(keep, 0o700); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(keep, keepName(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// keepName makes a test's name usable as one short path component.
func keepName(name string) string {
	name = strings.NewReplacer("/", "_", string(os.PathSeparator), "_", " ", "_").Replace(name)
	if len(name) > 80 {
		name = name[:80]
	}
	return name
}

// SecretInput records that the test itself wrote the secret into file as
// the tool's input (a spec naming a private repository by a URL with a
// token, a docker config): the sweep skips exactly these files and still
// reads everything the tool wrote next to them.
func SecretInput(t testing.TB, file string) {
	t.Helper()
	keep := os.Getenv(KeepEnv)
	if keep == "" {
		return
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	appendKept(t, filepath.Join(keep, SecretInputsFile), abs+"\n")
}

var keptMu sync.Mutex

// appendKept appends text to a kept file in one write (O_APPEND), so the
// records of tests running at once, in this process or another
// package's, never interleave.
func appendKept(t testing.TB, file, text string) {
	t.Helper()
	keptMu.Lock()
	defer keptMu.Unlock()
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// RecordOutput keeps what a run of the tool printed (under the sweep), in
// COMFY_TEST_KEEP/outputs-<pid>.log, labelled with the test's name.
func RecordOutput(t testing.TB, label string, outputs ...string) {
	t.Helper()
	keep := os.Getenv(KeepEnv)
	if keep == "" {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "=== %s: %s\n", t.Name(), label)
	for _, out := range outputs {
		b.WriteString(out)
		if !strings.HasSuffix(out, "\n") {
			b.WriteString("\n")
		}
	}
	appendKept(t, filepath.Join(keep, fmt.Sprintf("outputs-%d.log", os.Getpid())), b.String())
}

// OutputLog is a writer that keeps what a test's own run of the tool
// prints (see RecordOutput); io.Discard outside the sweep.
func OutputLog(t testing.TB, label string) io.Writer {
	t.Helper()
	keep := os.Getenv(KeepEnv)
	if keep == "" {
		return io.Discard
	}
	return &outputLog{t: t, file: filepath.Join(keep, fmt.Sprintf("outputs-%d.log", os.Getpid())), label: t.Name() + ": " + label}
}

type outputLog struct {
	t     testing.TB
	file  string
	label string
}

func (w *outputLog) Write(p []byte) (int, error) {
	keptMu.Lock()
	defer keptMu.Unlock()
	f, err := os.OpenFile(w.file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "=== %s\n%s\n", w.label, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
