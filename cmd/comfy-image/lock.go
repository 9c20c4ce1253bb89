package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

func newLockCmd() *cobra.Command {
	var f specFlags
	var asJSON bool
	var update []string
	cmd := &cobra.Command{
		Use:   "lock --version-id ID | --spec FILE [--update NAME]...",
		Short: "Resolve branches and tags to commits and write the lock, printing what changed",
		Example: `  comfy-image lock --version-id wan22-fast
  comfy-image lock --spec ./my.json --dry-run
  comfy-image lock --version-id wan22-fast --locked   # check the lock covers the spec
  comfy-image lock --version-id wan22-fast --lock versions/wan22-fast.lock.json --update gguf`,
		Args: usageArgs(noArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.load(cmd)
			if err != nil {
				return err
			}
			if err := s.CheckNames(update); err != nil {
				return usageError{err}
			}
			start := time.Now()
			opts := f.options(cmd)
			out := humanOut(cmd, asJSON)
			file := opts.LockPath(s.VersionID)
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
				l, err := resolve.ReadCovering(s, file, false)
				if err != nil {
					return fmt.Errorf("--locked: %w", err)
				}
				fmt.Fprintf(out, "lock %s covers the spec (core %s, %s, %s)\n", file, l.Comfy.Commit, progress.Count(len(l.CustomNodes), "node", "nodes"), progress.Count(len(l.Models), "model", "models"))
				return done(l)
			}
			if f.dryRun {
				fmt.Fprintf(out, "dry run: %s (%s)\n", s.VersionID, s.File)
				for _, line := range resolve.Plan(s, opts.ResolveOptions()...) {
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
			old, err := versions.ReadLock(file)
			switch {
			case errors.Is(err, versions.ErrNoLock):
				if len(update) > 0 {
					return usagef("--update: %s does not exist yet; run `comfy-image lock` without --update first", file)
				}
			case err != nil:
				return err
			}
			l, changes, err := resolve.Resolve(cmd.Context(), s, old, append(opts.ResolveOptions(), resolve.WithUpdate(update...), resolve.WithLockName(file))...)
			if err != nil {
				return err
			}
			wrote, err := resolve.WriteChanged(file, old, l)
			if err != nil {
				return fmt.Errorf("write lock: %w", err)
			}
			printLock(out, l)
			printChanges(out, changes)
			if wrote {
				fmt.Fprintf(out, "wrote %s\n", file)
			} else {
				fmt.Fprintf(out, "%s unchanged, not written\n", file)
			}
			return done(l)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON on stdout (schema versions/output.schema.json); text on stderr")
	cmd.Flags().StringArrayVar(&update, "update", nil, "move only `NAME` (comfy, a node, a model, python); repeatable")
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

// printChanges shows what moved against the previous lock, for review
// before the change is deployed.
func printChanges(out io.Writer, c resolve.Changes) {
	if c.First {
		fmt.Fprintln(out, "changes: first lock")
		return
	}
	lines := c.Lines
	if len(lines) == 0 {
		fmt.Fprintln(out, "changes: none")
		return
	}
	fmt.Fprintf(out, "changes (%d):\n", len(lines))
	for _, line := range lines {
		fmt.Fprintln(out, "  "+line)
	}
}

func describeRef(r versions.LockedRepo) string {
	if r.ResolvedRef == "" {
		return "(commit pinned)"
	}
	return r.ResolvedRef
}
