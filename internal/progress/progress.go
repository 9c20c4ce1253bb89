// Package progress reports long work (downloads, packing, pushing): bars with
// bytes, rate and ETA on a terminal (mpb), plain lines otherwise.
package progress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Reporter starts trackers for named units of work.
type Reporter interface {
	// Start begins a unit of total bytes (0 if unknown).
	Start(name string, total int64) Tracker
	// Wait flushes the display after all trackers started so far are
	// done. The reporter stays usable: a later Start opens a new area, so
	// one reporter serves several phases (downloads, then each push).
	Wait()
}

// Tracker follows one unit of work.
type Tracker interface {
	// Add counts n more bytes done.
	Add(n int64)
	// SetCurrent resets the count (after a restart or resume).
	SetCurrent(n int64)
	// SetTotal sets the size once it is known.
	SetTotal(n int64)
	// Done ends the unit; err nil means success.
	Done(err error)
}

// New picks bars when w is a terminal with a width and plain lines
// otherwise: mpb draws nothing on a terminal that reports 0 columns (a pty
// whose size was never set, as under `script`).
func New(w io.Writer) Reporter {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return &bars{w: w}
		}
	}
	return NewPlain(w, 10*time.Second)
}

// Discard reports nothing.
func Discard() Reporter { return NewPlain(io.Discard, time.Hour) }

// bars draws mpb bars. An mpb.Progress cannot be used after its Wait, so
// each phase gets its own, made by the first Start after a Wait.
type bars struct {
	w  io.Writer
	mu sync.Mutex
	p  *mpb.Progress
}

func (b *bars) area() *mpb.Progress {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p == nil {
		b.p = mpb.New(mpb.WithOutput(b.w), mpb.WithWidth(40))
	}
	return b.p
}

// maxBarName bounds a bar's name: the names share one column (their
// widest sets it), and a terminal cuts what does not fit at the end of
// the line, the counters and the bar, not the name.
const maxBarName = 48

// barName is name shortened to maxBarName runes in its middle, so its
// start (what it is) and its end (a digest) stay readable.
func barName(name string) string {
	r := []rune(name)
	if len(r) <= maxBarName {
		return name
	}
	tail := 16
	return string(r[:maxBarName-tail-1]) + "…" + string(r[len(r)-tail:])
}

func (b *bars) Start(name string, total int64) Tracker {
	bar := b.area().AddBar(total,
		mpb.PrependDecorators(decor.Name(barName(name), decor.WCSyncSpaceR), decor.Counters(decor.SizeB1024(0), "% .1f / % .1f")),
		mpb.AppendDecorators(decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30), decor.Name(" "), decor.EwmaETA(decor.ET_STYLE_GO, 30)),
	)
	return &barTracker{bar: bar, last: time.Now()}
}

func (b *bars) Wait() {
	b.mu.Lock()
	p := b.p
	b.p = nil
	b.mu.Unlock()
	if p != nil {
		p.Wait()
	}
}

type barTracker struct {
	bar  *mpb.Bar
	mu   sync.Mutex
	last time.Time
}

func (t *barTracker) Add(n int64) {
	t.mu.Lock()
	now := time.Now()
	t.bar.EwmaIncrInt64(n, now.Sub(t.last))
	t.last = now
	t.mu.Unlock()
}

func (t *barTracker) SetCurrent(n int64) { t.bar.SetCurrent(n) }

func (t *barTracker) SetTotal(n int64) { t.bar.SetTotal(n, false) }

func (t *barTracker) Done(err error) {
	if err != nil {
		t.bar.Abort(false)
		return
	}
	t.bar.SetTotal(-1, true)
}

// plain writes a start line, a line every interval, and an end line.
type plain struct {
	w        io.Writer
	interval time.Duration
	mu       sync.Mutex
}

// NewPlain reports as plain lines, at most one per interval per unit.
func NewPlain(w io.Writer, interval time.Duration) Reporter {
	return &plain{w: w, interval: interval}
}

func (p *plain) Start(name string, total int64) Tracker {
	p.printf("%s: started (%s)", name, Size(total))
	now := time.Now()
	return &plainTracker{p: p, name: name, total: total, start: now, last: now}
}

func (p *plain) Wait() {}

func (p *plain) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

type plainTracker struct {
	p           *plain
	name        string
	total, done int64
	start, last time.Time
	mu          sync.Mutex
}

func (t *plainTracker) Add(n int64) {
	t.mu.Lock()
	t.done += n
	now := time.Now()
	due := now.Sub(t.last) >= t.p.interval
	if due {
		t.last = now
	}
	done, total := t.done, t.total
	t.mu.Unlock()
	if due {
		rate := float64(done) / now.Sub(t.start).Seconds()
		eta := ""
		if total > 0 && rate > 0 {
			eta = fmt.Sprintf(", ETA %s", time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second))
		}
		t.p.printf("%s: %s of %s, %s/s%s", t.name, Size(done), Size(total), Size(int64(rate)), eta)
	}
}

func (t *plainTracker) SetCurrent(n int64) {
	t.mu.Lock()
	t.done = n
	t.mu.Unlock()
}

func (t *plainTracker) SetTotal(n int64) {
	t.mu.Lock()
	t.total = n
	t.mu.Unlock()
}

func (t *plainTracker) Done(err error) {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	secs := time.Since(t.start).Seconds()
	got := "0 B" // Size says "size unknown" for 0, which is not what came
	if done > 0 {
		got = Size(done)
	}
	if errors.Is(err, context.Canceled) {
		// Ctrl-C is not the download's failure: what came is kept.
		t.p.printf("%s: stopped after %s (%.1fs); the partial download is kept", t.name, got, secs)
		return
	}
	if err != nil {
		t.p.printf("%s: failed after %s (%.1fs)", t.name, got, secs)
		return
	}
	t.p.printf("%s: done, %s in %.1fs (%s/s)", t.name, Size(done), secs, Size(int64(float64(done)/max(secs, 0.001))))
}

// Count is "1 file", "3 files": a number with the noun it counts.
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Size formats a byte count for people ("1.5 GiB"); 0 or less is "size unknown".
func Size(n int64) string {
	if n <= 0 {
		return "size unknown"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
