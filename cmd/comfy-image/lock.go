package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

func newLockCmd() *cobra.Command {
	var f specFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "lock --version-id ID | --spec FILE",
		Short: "Resolve branches and tags to commits and write the lock",
		Example: `  comfy-image lock --version-id wan22-fast
  comfy-image lock --spec ./my.json --dry-run
  comfy-image lock --version-id wan22-fast --locked   # check the lock is current`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.load(cmd)
			if err != nil {
				return err
			}
			start := time.Now()
			opts := f.options(cmd)
			out := humanOut(cmd, asJSON)
			file := versions.LockPath(opts.CacheDir, s.VersionID)
			rep := newReport("lock")
			rep.VersionID, rep.SpecFile, rep.LockFile = s.VersionID, s.File, file
			done := func(l *versions.Lock) error {
				if !asJSON {
					return nil
				}
				if l != nil {
					rep.resolvedFrom(l)
				}
				rep.timed("total_seconds", start)
				return rep.print(cmd.OutOrStdout())
			}
			if f.locked {
				l, err := lockedFor(s, opts.CacheDir)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "lock %s is current (core %s, %d nodes)\n", file, l.Comfy.Commit, len(l.CustomNodes))
				return done(l)
			}
			if f.dryRun {
				fmt.Fprintf(out, "dry run: %s (%s)\n", s.VersionID, s.File)
				for _, line := range realize.PlanRepos(s, opts) {
					fmt.Fprintln(out, "  "+line)
				}
				fmt.Fprintf(out, "  would write %s\n", file)
				return done(nil)
			}
			release, err := holdCache(cmd, opts)
			if err != nil {
				return err
			}
			defer release()
			l, err := realize.ResolveRepos(cmd.Context(), s, opts)
			if err != nil {
				return err
			}
			if old, err := versions.ReadLock(file); err == nil {
				realize.CarryOver(old, l, s)
			}
			if err := versions.WriteLock(file, l); err != nil {
				return fmt.Errorf("write lock: %w", err)
			}
			printLock(out, l)
			fmt.Fprintf(out, "wrote %s\n", file)
			return done(l)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout (versions/output.schema.json); text goes to stderr")
	return cmd
}

// printLock prints one line per repository, in 100 columns however long the
// node names.
func printLock(out io.Writer, l *versions.Lock) {
	fmt.Fprintf(out, "%-30s %s  %s\n", "comfy", l.Comfy.Commit, fit(describeRef(l.Comfy), 26))
	for _, n := range l.CustomNodes {
		fmt.Fprintf(out, "%-30s %s  %s\n", fit(n.Name, 30), n.Commit, fit(describeRef(n.LockedRepo), 26))
	}
}

func describeRef(r versions.LockedRepo) string {
	if r.ResolvedRef == "" {
		return "(commit pinned)"
	}
	return r.ResolvedRef
}
