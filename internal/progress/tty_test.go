package progress

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// TestBarsServeSeveralPhases draws bars on a real pseudo-terminal through
// one reporter for two phases (as a build does: downloads, then each push);
// mpb refuses reuse after Wait, which made the second phase panic.
func TestBarsServeSeveralPhases(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	// A fresh pty is 0 columns wide; a terminal has a size.
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(copied) }()

	r := New(tty)
	if _, ok := r.(*bars); !ok {
		t.Fatalf("New on a terminal made %T, want bars", r)
	}
	for _, phase := range []string{"first-phase", "second-phase", "third-phase"} {
		tr := r.Start(phase, 4096)
		tr.Add(4096)
		tr.Done(nil)
		r.Wait()
	}
	tty.Close()
	<-copied
	for _, want := range []string{"first-phase", "second-phase", "third-phase", "4.0 KiB / 4.0 KiB", "[==="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("terminal output lacks %q:\n%q", want, out.String())
		}
	}
}

// TestZeroWidthTerminalGetsPlainLines: a pty whose size was never set (as
// under `script`) reports 0 columns, where bars show nothing at all; the
// reporter falls back to plain lines there.
func TestZeroWidthTerminalGetsPlainLines(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(copied) }()

	r := New(tty)
	tr := r.Start("wan_unet.gguf", 4096)
	tr.Add(4096)
	tr.Done(nil)
	r.Wait()
	tty.Close()
	<-copied
	for _, want := range []string{"wan_unet.gguf: started (4.0 KiB)", "wan_unet.gguf: done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output on a 0-column terminal lacks %q:\n%q", want, out.String())
		}
	}
}
