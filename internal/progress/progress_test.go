package progress

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPlainLines(t *testing.T) {
	var buf bytes.Buffer
	r := NewPlain(&buf, 0) // a line on every Add
	tr := r.Start("model.bin", 2048)
	tr.Add(1024)
	tr.Done(nil)
	failed := r.Start("other.bin", 0)
	failed.Done(errors.New("cut"))
	out := buf.String()
	for _, want := range []string{"model.bin: started (2.0 KiB)", "model.bin: 1.0 KiB of 2.0 KiB", "ETA", "model.bin: done, 1.0 KiB", "other.bin: failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPlainIsQuietBetweenIntervals(t *testing.T) {
	var buf bytes.Buffer
	tr := NewPlain(&buf, time.Hour).Start("x", 100)
	for range 50 {
		tr.Add(1)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines for 50 small adds within an interval, want only the start line", n)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "size unknown", 512: "512 B", 1536: "1.5 KiB", 3 << 30: "3.0 GiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBarNamesStayShortAndKeepBothEnds(t *testing.T) {
	long := "upload config extra_model_paths.yaml, comfy.env, entrypoint.sh, worker.py, comfy-image.json 5b328fb09330"
	got := barName(long)
	if n := len([]rune(got)); n != maxBarName {
		t.Fatalf("%q is %d runes, want %d", got, n, maxBarName)
	}
	if !strings.HasPrefix(got, "upload config") || !strings.HasSuffix(got, "5b328fb09330") {
		t.Fatalf("%q lost its start or its digest", got)
	}
	if short := "upload core ComfyUI 95be42860f24"; barName(short) != short {
		t.Fatalf("a short name changed: %q", barName(short))
	}
}
