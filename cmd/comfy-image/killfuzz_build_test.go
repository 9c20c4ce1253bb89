package main

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// TestBuildKillFuzz kills `build` (SIGKILL, its whole process group) at
// seeded random points of its run, each in a fresh cache, then runs the same
// command again: the rerun must succeed and the registry must hold the app
// and models manifests of a clean run, digest for digest.
//
// COMFY_KILL_POINTS sets how many points (8 by default; `make faults` runs
// 20), COMFY_KILL_SEED replays a seed printed by an earlier run.
func TestBuildKillFuzz(t *testing.T) {
	points := envInt(t, "COMFY_KILL_POINTS", 8)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("COMFY_KILL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("COMFY_KILL_SEED=%q: expected a number", s)
		}
	}
	t.Logf("kill fuzz of build: %d points, COMFY_KILL_SEED=%d", points, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	args := func(reg *testsupport.Registry) []string {
		return []string{"build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels, "--push", reg.Host + "/comfy/demo:v1"}
	}
	// The clean run: its digests, and how long a build takes from nothing
	// (the binary is built first, outside the measure).
	testsupport.Binary(t)
	clean := testsupport.NewRegistry(t)
	start := time.Now()
	if res := testsupport.Run(t, v.Dir, v.Env(filepath.Join(testsupport.TempDir(t), "cache")), args(clean)...); res.Code != 0 {
		t.Fatalf("clean build: exit %d\n%s", res.Code, res.Stderr)
	}
	took := time.Since(start)
	want := pushedDigests(t, clean)
	t.Logf("a clean build took %s", took.Round(time.Millisecond))

	for i := range points {
		// Within 90% of a clean run, so most kills land before the end.
		delay := time.Duration(rng.Int64N(int64(took) * 9 / 10))
		reg := testsupport.NewRegistry(t)
		env := v.Env(filepath.Join(testsupport.TempDir(t), "cache"))
		killed := killAfter(t, v.Dir, env, delay, args(reg)...)
		t.Logf("point %d: killed at %s (before it ended: %v)", i, delay.Round(time.Millisecond), killed)
		res := testsupport.Run(t, v.Dir, env, args(reg)...)
		if res.Code != 0 || strings.Contains(res.Stderr, "panic") {
			t.Fatalf("point %d (seed %d, killed at %s, before exit: %v): the rerun failed with exit %d\n%s",
				i, seed, delay, killed, res.Code, res.Stderr)
		}
		if got := pushedDigests(t, reg); got != want {
			t.Fatalf("point %d (seed %d, killed at %s): the rerun pushed %s, a clean run %s", i, seed, delay, got, want)
		}
	}
}

// killAfter starts the command in its own process group and kills the
// group after delay; it reports whether the kill came before the exit.
func killAfter(t *testing.T, dir string, env []string, delay time.Duration, args ...string) bool {
	t.Helper()
	cmd := exec.Command(testsupport.Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = testsupport.OutputLog(t, "killed build"), testsupport.OutputLog(t, "killed build")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return false
	case <-time.After(delay):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return true
	}
}

// pushedDigests reads the app and models manifest digests from the registry.
func pushedDigests(t *testing.T, reg *testsupport.Registry) string {
	t.Helper()
	var out []string
	for _, tag := range []string{"v1", "v1-models"} {
		ref, err := name.ParseReference(reg.Host + "/comfy/demo:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		out = append(out, tag+"@"+desc.Digest.String())
	}
	return strings.Join(out, " ")
}

func envInt(t *testing.T, key string, def int) int {
	t.Helper()
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: expected a count", key, s)
	}
	return n
}
