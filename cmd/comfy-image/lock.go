package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

func newLockCmd() *cobra.Command {
	var f specFlags
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
			opts := f.options(cmd)
			out := cmd.OutOrStdout()
			file := versions.LockPath(opts.CacheDir, s.VersionID)
			if f.locked {
				l, err := lockedFor(s, opts.CacheDir)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "lock %s is current (core %s, %d nodes)\n", file, l.Comfy.Commit, len(l.CustomNodes))
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
			printLock(cmd, l)
			fmt.Fprintf(out, "wrote %s\n", file)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func printLock(cmd *cobra.Command, l *versions.Lock) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "%-24s %s  %s\n", "comfy", l.Comfy.Commit, describeRef(l.Comfy))
	for _, n := range l.CustomNodes {
		fmt.Fprintf(out, "%-24s %s  %s\n", n.Name, n.Commit, describeRef(n.LockedRepo))
	}
}

func describeRef(r versions.LockedRepo) string {
	if r.ResolvedRef == "" {
		return "(commit pinned)"
	}
	return r.ResolvedRef
}
