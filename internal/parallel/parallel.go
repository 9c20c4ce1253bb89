// Package parallel is the one place where comfy-image bounds concurrent
// work: the default limits of every stage, and two ways to run n pieces of
// work with such a limit (errgroup with SetLimit underneath).
package parallel

import (
	"context"
	"errors"
	"runtime"

	"golang.org/x/sync/errgroup"
)

// Default limits. Network work is bounded to be polite to one host;
// CPU-bound work follows the cores the process may use.
const (
	// Fetches bounds git fetches and ref listings, and model revision
	// queries, at once.
	Fetches = 4
	// Downloads bounds model downloads at once (large bodies from one or
	// two hosts; more only splits the same bandwidth).
	Downloads = 3
	// Uploads bounds blob uploads to one registry at once.
	Uploads = 4
	// Packs bounds model layers digested at once (each reads whole files).
	Packs = 2
	// AppPacks bounds app layers (core, nodes) packed at once: small
	// trees read from git mirrors, each ending in a cache write, so a few
	// at once keep the cores busy while others wait on the disk.
	AppPacks = 4
)

// CPUs is the default for CPU-bound work (compression, hashing).
func CPUs() int { return max(1, runtime.GOMAXPROCS(0)) }

// Limit is n when it is set (> 0), else def: the one rule by which an
// option such as --jobs 0 means "the default".
func Limit(n, def int) int {
	if n > 0 {
		return n
	}
	return max(1, def)
}

// Do runs fn for i in [0, n), at most limit at once. The first error
// cancels the context the others run with, no further work starts, and
// that error is returned: the right behaviour when one failure makes the
// whole result useless (a layer that cannot be packed, a ref that cannot
// be resolved). The context fn gets ends when Do returns: what outlives
// Do (a lazy layer that packs later) must not keep it.
func Do(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, limit))
	for i := range n {
		if gctx.Err() != nil {
			break // a sibling failed: start nothing more
		}
		g.Go(func() error { return fn(gctx, i) })
	}
	return g.Wait()
}

// Each runs fn for i in [0, n), at most limit at once, and lets every
// piece finish: the errors of all of them are joined. It is for work whose
// failures a user wants listed together (every model that cannot be
// fetched, not only the first), where one failure spoils none of the rest.
func Each(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	errs := make([]error, n)
	var g errgroup.Group
	g.SetLimit(max(1, limit))
	for i := range n {
		g.Go(func() error {
			errs[i] = fn(ctx, i)
			return nil
		})
	}
	_ = g.Wait() // the goroutines return nil; their errors are in errs
	return errors.Join(errs...)
}
