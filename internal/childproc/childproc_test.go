package childproc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

func TestEnvKeepsOnlyTheAllowList(t *testing.T) {
	env := Env([]string{"PATH=/bin", "HF_TOKEN=secret", "LC_ALL=C", "https_proxy=http://p:3128", "PIP_INDEX_URL=https://evil/",
		"AWS_SECRET_ACCESS_KEY=secret", "SSL_CERT_FILE=/ca.pem", "HOME=/root", "GIT_ASKPASS=/x"}, "/tmp/h", "PIP_NO_INPUT=1")
	got := strings.Join(env, "\n") + "\n"
	for _, want := range []string{"PATH=/bin\n", "LC_ALL=C\n", "https_proxy=http://p:3128\n", "SSL_CERT_FILE=/ca.pem\n", "HOME=/tmp/h\n", "PIP_NO_INPUT=1\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q missing from\n%s", want, got)
		}
	}
	for _, bad := range []string{"secret", "PIP_INDEX_URL", "HOME=/root", "GIT_ASKPASS"} {
		if strings.Contains(got, bad) {
			t.Errorf("%q passed on:\n%s", bad, got)
		}
	}
}

// A real child sees the filtered environment and a private HOME that is
// gone afterwards.
func TestChildSeesNoSecret(t *testing.T) {
	t.Setenv("HF_TOKEN", "hf_sentinel")
	out, err := Command(context.Background(), "sh", "-c", `env; test -d "$HOME" && test -w "$HOME" && echo HOMEOK`).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hf_sentinel") || !strings.Contains(string(out), "HOMEOK") {
		t.Fatalf("child environment:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if home, ok := strings.CutPrefix(line, "HOME="); ok {
			if _, err := os.Stat(home); !os.IsNotExist(err) {
				t.Errorf("private HOME %s left behind", home)
			}
		}
	}
}

// Cancelling kills the child's whole process group: a grandchild that
// ignores nothing and waits forever is gone too.
func TestCancelKillsTheGroup(t *testing.T) {
	dir := testsupport.TempDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	fifo := filepath.Join(dir, "ready")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The grandchild is found by a marker in its command line: in a PID
	// namespace the pid it would print is not the host's.
	marker := fmt.Sprintf("600.%d", time.Now().UnixNano()%1_000_000_000)
	cmd := Command(ctx, "sh", "-c", `sleep `+marker+` & echo ready > `+fifo+`; wait`)
	done := make(chan error, 1)
	go func() { done <- cmd.Run() }()
	f, err := os.Open(fifo)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	f.Read(buf)
	f.Close()
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a cancelled child reported success")
	}
	pid := pidWithArg(marker)
	if pid == "" {
		return // gone already
	}
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err == nil && !strings.Contains(string(stat), ") Z ") {
		// The kill is delivered before Wait returns for the group
		// leader; the grandchild may need a moment to be reaped by init.
		for i := 0; i < 100 && err == nil && !strings.Contains(string(stat), ") Z "); i++ {
			syscall.Nanosleep(&syscall.Timespec{Nsec: 20_000_000}, nil)
			stat, err = os.ReadFile("/proc/" + pid + "/stat")
		}
		if err == nil && !strings.Contains(string(stat), ") Z ") {
			t.Fatalf("grandchild %s survived the cancel: %s", pid, stat)
		}
	}
}

// pidWithArg finds a live process whose command line holds arg.
func pidWithArg(arg string) string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), arg) {
			return filepath.Base(filepath.Dir(p))
		}
	}
	return ""
}
