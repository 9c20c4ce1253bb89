package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// Kill fuzz (issue 8, fault suite): realize is SIGKILLed, its whole process
// group (pip and git children included), at seeded random points; a plain
// rerun must then leave the target exactly as a clean realize does: every
// path, its type, mode, content and link target.
//
// COMFY_KILL_POINTS sets how many points (default 8; `make faults` runs
// 20) and COMFY_KILL_SEED the seed (default: the clock; it is logged, and
// printed on failure, so a failing run can be replayed).
//
// Compared aside, as files whose bytes legitimately differ between two
// clean runs too: compiled bytecode (*.pyc, __pycache__) and pip's
// per-install records in *.dist-info (INSTALLER, direct_url.json, RECORD;
// RECORD lists the .pyc files). Everything else, the venv included, must
// be equal.
func TestKillFuzzRealize(t *testing.T) {
	points := envInt(t, "COMFY_KILL_POINTS", 8)
	seed := int64(envInt(t, "COMFY_KILL_SEED", int(time.Now().UnixNano()%1_000_000_000)))
	t.Logf("kill fuzz: %d points, COMFY_KILL_SEED=%d", points, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	s := newSite(t)
	s.hf.Throttle(1 << 20) // downloads take a while, so some kills land in them
	cleanCache := filepath.Join(s.dir, "cache-clean")
	clean := filepath.Join(s.dir, "clean")
	start := time.Now()
	if res := s.realizeWith(t, cleanCache, clean); res.Code != 0 {
		t.Fatalf("clean realize: %s", res.Stderr)
	}
	span := time.Since(start)
	want := settledTree(t, clean)

	for i := range points {
		// Each point starts cold (a new cache and target), so a kill can
		// land in a clone, the venv, pip, a download or the layout.
		delay := time.Duration(rng.Int64N(int64(span)))
		cache := filepath.Join(s.dir, fmt.Sprintf("cache-%d", i))
		target := filepath.Join(s.dir, fmt.Sprintf("target-%d", i))
		killed := s.killRealizeAfter(t, cache, target, delay)
		res := s.realizeWith(t, cache, target)
		if res.Code != 0 {
			t.Errorf("seed %d point %d (killed after %v, during %q): the rerun failed (exit %d):\n%s",
				seed, i, delay, killed, res.Code, res.Stderr)
			continue
		}
		if diff := diffTrees(want, settledTree(t, target)); diff != "" {
			t.Errorf("seed %d point %d (killed after %v, during %q): the rerun's target differs from a clean realize:\n%s",
				seed, i, delay, killed, diff)
		}
	}
}

func (s *site) realizeArgs(target string) []string {
	return []string{"realize", "--version-id", "demo", "--target", target, "--wheels-dir", s.wheels}
}

func (s *site) realizeWith(t *testing.T, cache, target string) testsupport.Result {
	t.Helper()
	return testsupport.Run(t, s.dir, append(s.env(), "COMFY_CACHE="+cache), s.realizeArgs(target)...)
}

// killRealizeAfter starts realize in its own process group and SIGKILLs the
// group after delay (unless it ended before). It returns the last line the
// tool printed, to say where the kill landed.
func (s *site) killRealizeAfter(t *testing.T, cache, target string, delay time.Duration) string {
	t.Helper()
	cmd := exec.Command(testsupport.Binary(t), s.realizeArgs(target)...)
	cmd.Dir = s.dir
	cmd.Env = append(append(os.Environ(), s.env()...), "COMFY_CACHE="+cache)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out lastLines
	cmd.Stderr = io.MultiWriter(&out, testsupport.OutputLog(t, "killed realize"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return "(ended before the kill)"
	case <-time.After(delay):
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	// Wait until no process of the group is left (children die with it).
	for range 100 {
		if syscall.Kill(-cmd.Process.Pid, 0) != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out.last()
}

// lastLines keeps what a process wrote, to report its last line.
type lastLines struct{ buf []byte }

func (l *lastLines) Write(p []byte) (int, error) { l.buf = append(l.buf, p...); return len(p), nil }

func (l *lastLines) last() string {
	lines := strings.Split(strings.TrimSpace(string(l.buf)), "\n")
	return lines[len(lines)-1]
}

// settledTree is the target as snapshot sees it (type, mode, content, link
// target), without the tool's own state and the files set aside above.
func settledTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for p, v := range snapshot(t, dir, ".comfy-image") {
		base := filepath.Base(p)
		inDistInfo := strings.HasSuffix(filepath.Dir(p), ".dist-info")
		switch {
		case strings.HasSuffix(p, ".pyc"), base == "__pycache__", strings.Contains(p, "/__pycache__/"):
		case inDistInfo && (base == "INSTALLER" || base == "direct_url.json" || base == "RECORD"):
		default:
			out[p] = v
		}
	}
	return out
}

// diffTrees lists the paths that differ (at most 20).
func diffTrees(want, got map[string]string) string {
	var diffs []string
	for p, v := range want {
		if g, ok := got[p]; !ok {
			diffs = append(diffs, "missing "+p)
		} else if g != v {
			diffs = append(diffs, "differs "+p+": "+short(g)+" want "+short(v))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "extra   "+p)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 20 {
		diffs = append(diffs[:20], fmt.Sprintf("... and %d more", len(diffs)-20))
	}
	return strings.Join(diffs, "\n")
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
