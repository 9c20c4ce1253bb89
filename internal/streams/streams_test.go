package streams_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/comfy-image/comfy-image/internal/streams"
)

// A read whose context ended stops at the next Read with the context's
// error; before that it reads as r does.
func TestWithContextStopsAtTheNextRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := streams.WithContext(ctx, strings.NewReader("0123456789"))
	buf := make([]byte, 4)
	if n, err := r.Read(buf); n != 4 || err != nil || string(buf) != "0123" {
		t.Fatalf("read before the end: %d %q %v", n, buf[:n], err)
	}
	cancel()
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("read after the end: %d bytes, %v; want context.Canceled", n, err)
	}
}

// Writes from many goroutines come out whole: every line intact.
func TestLockedWritesGoOutWhole(t *testing.T) {
	var buf bytes.Buffer
	w := streams.Locked(&buf)
	line := strings.Repeat("x", 1000) + "\n"
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 20 {
				io.WriteString(w, line)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	for i, l := range lines {
		if l+"\n" != line {
			t.Fatalf("line %d is not whole: %d bytes", i, len(l))
		}
	}
}
