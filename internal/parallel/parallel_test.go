package parallel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// running counts goroutines inside fn and remembers the most at once.
type running struct{ now, peak atomic.Int32 }

func (r *running) enter() {
	n := r.now.Add(1)
	for {
		p := r.peak.Load()
		if n <= p || r.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (r *running) leave() { r.now.Add(-1) }

func TestDoKeepsTheLimitAndRunsEverything(t *testing.T) {
	var r running
	var done atomic.Int32
	gate := make(chan struct{})
	go func() {
		for range 40 {
			gate <- struct{}{}
		}
	}()
	err := Do(context.Background(), 40, 3, func(ctx context.Context, i int) error {
		r.enter()
		defer r.leave()
		<-gate
		done.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if done.Load() != 40 {
		t.Fatalf("ran %d of 40", done.Load())
	}
	if p := r.peak.Load(); p > 3 {
		t.Fatalf("%d ran at once with limit 3", p)
	}
}

func TestDoCancelsSiblingsOnTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	var started atomic.Int32
	err := Do(context.Background(), 100, 2, func(ctx context.Context, i int) error {
		started.Add(1)
		if i == 0 {
			return boom
		}
		<-ctx.Done() // a sibling waits until the failure cancels it
		return ctx.Err()
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if n := started.Load(); n > 3 {
		t.Fatalf("%d of 100 started after the first failed; want no new work", n)
	}
}

func TestEachReportsEveryFailure(t *testing.T) {
	var r running
	err := Each(context.Background(), 10, 2, func(ctx context.Context, i int) error {
		r.enter()
		defer r.leave()
		if i%3 == 0 {
			return fmt.Errorf("item %d failed", i)
		}
		return nil
	})
	for _, i := range []int{0, 3, 6, 9} {
		if want := fmt.Sprintf("item %d failed", i); err == nil || !contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if p := r.peak.Load(); p > 2 {
		t.Fatalf("%d ran at once with limit 2", p)
	}
}

func TestLimitDefaults(t *testing.T) {
	if Limit(0, Downloads) != Downloads || Limit(-1, 0) != 1 || Limit(7, Downloads) != 7 {
		t.Fatal("Limit: a set value wins, 0 or less takes the default, never below 1")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
