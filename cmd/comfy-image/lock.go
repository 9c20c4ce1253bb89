package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

func newLockCmd() *cobra.Command {
	var f specFlags
	var update []string
	cmd := &cobra.Command{
		Use:   "lock --version-id ID | --spec FILE [--update NAME]...",
		Short: "Resolve branches and tags to commits and write the lock, printing what changed",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.load(cmd)
			if err != nil {
				return err
			}
			if err := s.CheckNames(update); err != nil {
				return usageError{err}
			}
			opts := f.options(cmd)
			out := cmd.OutOrStdout()
			file := opts.LockPath(s.VersionID)
			if f.locked {
				l, _, err := realize.ReadCovering(s, opts, false)
				if err != nil {
					return fmt.Errorf("--locked: %w", err)
				}
				fmt.Fprintf(out, "lock %s covers the spec (core %s, %d nodes, %d models)\n", file, l.Comfy.Commit, len(l.CustomNodes), len(l.Models))
				return nil
			}
			if f.dryRun {
				fmt.Fprintf(out, "dry run: %s (%s)\n", s.VersionID, s.File)
				for _, line := range realize.PlanRepos(s, opts) {
					fmt.Fprintln(out, "  "+line)
				}
				fmt.Fprintf(out, "  would write %s\n", file)
				return nil
			}
			old, err := versions.ReadLock(file)
			switch {
			case errors.Is(err, versions.ErrNoLock):
				if len(update) > 0 {
					return usagef("--update: %s does not exist yet; run `comfy-image lock` without --update first", file)
				}
			case err != nil:
				return err
			}
			l, err := realize.Resolve(cmd.Context(), s, opts, realize.Resolution{Old: old, Update: update})
			if err != nil {
				return err
			}
			if err := realize.WriteLockIfChanged(file, old, l); err != nil {
				return fmt.Errorf("write lock: %w", err)
			}
			printLock(cmd, l)
			printChanges(cmd, old, l)
			fmt.Fprintf(out, "wrote %s\n", file)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringArrayVar(&update, "update", nil, "move only this core (comfy), node or model (repeatable; \"python\" drops the Python sets); the rest stays as locked")
	return cmd
}

func printLock(cmd *cobra.Command, l *versions.Lock) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "%-24s %s  %s\n", "comfy", l.Comfy.Commit, describeRef(l.Comfy))
	for _, n := range l.CustomNodes {
		fmt.Fprintf(out, "%-24s %s  %s\n", n.Name, n.Commit, describeRef(n.LockedRepo))
	}
}

// printChanges shows what moved against the previous lock, for review
// before the change is deployed.
func printChanges(cmd *cobra.Command, old, l *versions.Lock) {
	out := cmd.OutOrStdout()
	if old == nil {
		fmt.Fprintln(out, "changes: first lock")
		return
	}
	lines := l.Diff(old)
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
