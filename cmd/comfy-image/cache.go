package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

func newCacheCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Show what the cache holds (du) and remove what no lock uses (prune)",
		Example: `  comfy-image cache du
  comfy-image cache prune --dry-run
  comfy-image cache prune --keep-lock ./old/wan22-fast.lock.json`,
	}
	cmd.AddCommand(newCacheDuCmd(), newCachePruneCmd())
	return groupCommand(cmd)
}

// cacheDirOf is the cache a command works on; it must exist.
func cacheDirOf(cmd *cobra.Command) (string, error) {
	flag, _ := cmd.Flags().GetString("cache-dir")
	dir := realize.CacheDir(flag)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", usagef("cache %s: no such folder (set --cache-dir or COMFY_CACHE)", dir)
	}
	return dir, nil
}

func newCacheDuCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "du",
		Short:   "Show the cache's mirrors, models, layers and wheels, and the versions using them",
		Example: "  comfy-image cache du\n  COMFY_CACHE=/data/cache comfy-image cache du",
		Args:    usageArgs(noArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := cacheDirOf(cmd)
			if err != nil {
				return err
			}
			locks, err := realize.ReadCacheLocks(dir)
			if err != nil {
				return err
			}
			u, err := realize.ScanCache(dir, locks)
			if err != nil {
				return err
			}
			printUsage(cmd.OutOrStdout(), u)
			return nil
		},
	}
}

func newCachePruneCmd() *cobra.Command {
	var keep []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune [--keep-lock FILE]... [--dry-run]",
		Short: "Remove what no lock in the cache (nor one given with --keep-lock) uses",
		Long: `Remove the mirrors, models, partial downloads, layers and wheels that no lock in
the cache (resolved/*.lock.json, with what the last build or realize of each
of their versions used) nor any --keep-lock FILE uses. The locks stay.
It refuses to run while a lock, realize or build uses the cache.`,
		Example: "  comfy-image cache prune --dry-run\n  comfy-image cache prune --keep-lock ./wan22-fast.lock.json",
		Args:    usageArgs(noArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := cacheDirOf(cmd)
			if err != nil {
				return err
			}
			var extra []*versions.Lock
			for _, f := range keep {
				l, err := versions.ReadLock(f)
				if err != nil {
					return usagef("--keep-lock: %v", err)
				}
				extra = append(extra, l)
			}
			locks, err := realize.ReadCacheLocks(dir)
			if err != nil {
				return err
			}
			removed, err := realize.PruneCache(dir, append(locks, extra...), dryRun)
			verb, summary := "removed", "freed"
			if dryRun {
				verb, summary = "would remove", "would free"
			}
			var freed int64
			out := cmd.OutOrStdout()
			for _, e := range removed {
				freed += e.Size
				fmt.Fprintf(out, "%s %-17s %s  %s\n", verb, e.Kind, fit(e.Name, 56), humanSize(e.Size))
			}
			if err != nil {
				if errors.Is(err, realize.ErrCacheBusy) {
					return err
				}
				return fmt.Errorf("prune stopped: %w", err)
			}
			fmt.Fprintf(out, "%s %s in %s\n", summary, humanSize(freed), count(len(removed), "entry", "entries"))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keep, "keep-lock", nil, "also keep what this lock `FILE` uses (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be removed; remove nothing")
	return cmd
}

// printUsage prints the cache by kind, then by version, in 100 columns.
func printUsage(out io.Writer, u *realize.CacheUsage) {
	var total int64
	for _, e := range u.Entries {
		total += e.Size
	}
	fmt.Fprintf(out, "cache %s: %s (%s, %s other)\n", u.Dir, humanSize(total+u.Other), count(len(u.Entries), "entry", "entries"), humanSize(u.Other))
	for _, kind := range []string{realize.KindMirror, realize.KindModel, realize.KindPartial, realize.KindLayer, realize.KindWheel, realize.KindBaseLayer} {
		var es []realize.CacheEntry
		var size int64
		for _, e := range u.Entries {
			if e.Kind == kind {
				es = append(es, e)
				size += e.Size
			}
		}
		if len(es) == 0 {
			continue
		}
		fmt.Fprintf(out, "%s: %s, %s\n", kind, count(len(es), "entry", "entries"), humanSize(size))
		for _, e := range es {
			users := "unused"
			if len(e.Users) > 0 {
				users = strings.Join(e.Users, ", ")
			}
			fmt.Fprintf(out, "  %-56s %10s  %s\n", fit(e.Name, 56), humanSize(e.Size), fit(users, 28))
		}
	}
	if len(u.Versions) > 0 {
		fmt.Fprintln(out, "by version:")
	}
	for _, v := range u.Versions {
		var n int
		var size int64
		for _, e := range u.Entries {
			for _, user := range e.Users {
				if user == v {
					n++
					size += e.Size
				}
			}
		}
		fmt.Fprintf(out, "  %-56s %10s  %s\n", fit(v, 56), humanSize(size), count(n, "entry", "entries"))
	}
	var n int
	var size int64
	for _, e := range u.Unused() {
		n++
		size += e.Size
	}
	if n > 0 {
		fmt.Fprintf(out, "unused: %s, %s (comfy-image cache prune removes them)\n", count(n, "entry", "entries"), humanSize(size))
	} else {
		fmt.Fprintln(out, "unused: nothing")
	}
}

// humanSize is progress.Size, with 0 as "0 B" (an empty file has a size).
func humanSize(n int64) string {
	if n <= 0 {
		return "0 B"
	}
	return progress.Size(n)
}

// count is "1 file", "3 files".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// fit shortens s to n runes, keeping its end (the distinctive part of a
// path or a node name).
func fit(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}
