// Package childproc runs the tool's child processes (python -m venv, pip)
// under two rules: a child sees only an allow-listed environment (never a
// secret of the caller such as HF_TOKEN), with a HOME of its own; and no
// child outlives the tool (it dies with the thread that started it, and
// its own children are killed with its process group when the work is
// cancelled).
package childproc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// allowed are the caller's variables a child may see: how to find
// programs, the locale, where temporary files go, how to reach the network
// (proxies, CA certificates) and which pyenv Python a shim runs. Nothing
// else, so a token in the caller's environment never reaches pip, a
// requirements file or a package's code.
var allowed = map[string]bool{
	"PATH": true, "LANG": true, "LANGUAGE": true, "TMPDIR": true, "TZ": true,
	"http_proxy": true, "https_proxy": true, "no_proxy": true, "all_proxy": true,
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "NO_PROXY": true, "ALL_PROXY": true,
	"SSL_CERT_FILE": true, "SSL_CERT_DIR": true, "REQUESTS_CA_BUNDLE": true,
	"PYENV_ROOT": true, "PYENV_VERSION": true,
}

// Env is the environment of a child: the allow-listed variables of
// environ, HOME set to home, then extra ("NAME=value", set by the tool).
func Env(environ []string, home string, extra ...string) []string {
	var env []string
	pyenvRoot := false
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || !(allowed[name] || strings.HasPrefix(name, "LC_")) {
			continue
		}
		pyenvRoot = pyenvRoot || name == "PYENV_ROOT"
		env = append(env, kv)
	}
	// A pyenv shim finds its Pythons under $HOME/.pyenv; with HOME moved
	// it needs the root named.
	if callerHome, err := os.UserHomeDir(); err == nil && !pyenvRoot {
		if st, err := os.Stat(filepath.Join(callerHome, ".pyenv")); err == nil && st.IsDir() {
			env = append(env, "PYENV_ROOT="+filepath.Join(callerHome, ".pyenv"))
		}
	}
	env = append(env, "HOME="+home)
	return append(env, extra...)
}

// Cmd is a child process about to run.
type Cmd struct {
	*exec.Cmd
	extra []string
	ctx   context.Context
}

// Command prepares name with args; ctx cancellation kills its whole
// process group. Set Dir, Stdout, Stderr on the returned Cmd as usual;
// extra environment variables go to Setenv.
func Command(ctx context.Context, name string, args ...string) *Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		// The negative pid is the group: pip's own children die too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	return &Cmd{Cmd: cmd, ctx: ctx}
}

// Setenv adds variables ("NAME=value") the tool sets for this child.
func (c *Cmd) Setenv(kv ...string) { c.extra = append(c.extra, kv...) }

// Run starts the child and waits for it. The start and the wait happen on
// one locked OS thread: the kernel sends Pdeathsig when the thread that
// forked the child ends, and Go may end an idle thread at any time, so
// the thread must live as long as the child. HOME is a fresh private
// folder removed afterwards.
func (c *Cmd) Run() error {
	home, err := os.MkdirTemp("", "comfy-child-home-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	c.Env = Env(os.Environ(), home, c.extra...)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := c.start(); err != nil {
			done <- err
			return
		}
		done <- c.Cmd.Wait()
	}()
	return <-done
}

// start starts the child as the first process of a new PID namespace
// where the system allows it: when that process dies (Pdeathsig kills it
// with the tool), the kernel kills every process left in the namespace, so
// grandchildren such as the pip that ensurepip starts cannot outlive the
// tool and write into a folder a later run has cleaned. As root that is
// CLONE_NEWPID; otherwise a user namespace mapping the caller's own ids
// comes with it. Where neither is allowed, the child runs as before.
func (c *Cmd) start() error {
	base := *c.SysProcAttr
	for _, ns := range namespaces() {
		attr := base
		attr.Cloneflags = ns.flags
		attr.UidMappings, attr.GidMappings = ns.uids, ns.gids
		c.SysProcAttr = &attr
		err := c.Cmd.Start()
		if err == nil || !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOSPC) {
			return err
		}
		// Not allowed here: a fresh exec.Cmd for the next attempt, as a
		// Cmd cannot be started twice.
		fresh := exec.CommandContext(c.ctx, c.Path, c.Args[1:]...)
		fresh.Dir, fresh.Env, fresh.Stdin, fresh.Stdout, fresh.Stderr = c.Dir, c.Env, c.Stdin, c.Stdout, c.Stderr
		fresh.Cancel, fresh.ExtraFiles = c.Cmd.Cancel, c.ExtraFiles
		c.Cmd = fresh
	}
	c.SysProcAttr = &base
	return c.Cmd.Start()
}

type namespace struct {
	flags      uintptr
	uids, gids []syscall.SysProcIDMap
}

func namespaces() []namespace {
	if os.Geteuid() == 0 {
		return []namespace{{flags: syscall.CLONE_NEWPID}}
	}
	return []namespace{{
		flags: syscall.CLONE_NEWPID | syscall.CLONE_NEWUSER,
		uids:  []syscall.SysProcIDMap{{ContainerID: os.Geteuid(), HostID: os.Geteuid(), Size: 1}},
		gids:  []syscall.SysProcIDMap{{ContainerID: os.Getegid(), HostID: os.Getegid(), Size: 1}},
	}}
}

// Output runs the child and returns its standard output.
func (c *Cmd) Output() ([]byte, error) {
	var out strings.Builder
	c.Stdout = &out
	var stderr strings.Builder
	if c.Stderr == nil {
		c.Stderr = &stderr
	}
	err := c.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) && stderr.Len() > 0 {
		exit.Stderr = []byte(stderr.String())
	}
	return []byte(out.String()), err
}

// CombinedOutput runs the child and returns its output and errors, mixed.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	// One writer for both: exec then calls Write from one goroutine.
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	return out.Bytes(), err
}
