package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

// specFlags are the flags of every command that works on one version.
type specFlags struct {
	versionID   string
	specFile    string
	versionsDir string
	offline     bool
	dryRun      bool
	locked      bool
	lockFile    string
}

func (f *specFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.versionID, "version-id", "", "version `ID`: reads versions/<ID>.json (then --versions-dir)")
	fl.StringVar(&f.specFile, "spec", "", "the spec `FILE` to read")
	fl.StringVar(&f.versionsDir, "versions-dir", "", "`DIR` of specs searched after ./versions")
	fl.BoolVar(&f.offline, "offline", false, "no network: use the cache, the lock and --wheels-dir only")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan; change nothing")
	fl.BoolVar(&f.locked, "locked", false, "resolve nothing: the lock is the truth; fail on what it does not cover")
	fl.StringVar(&f.lockFile, "lock", "", "keep the lock in `FILE` (e.g. versions/<id>.lock.json), not in the cache")
}

// load finds, reads and validates the spec, printing its warnings.
func (f *specFlags) load(cmd *cobra.Command) (*versions.Spec, error) {
	var file string
	switch {
	case f.specFile != "" && f.versionID != "":
		return nil, usagef("give --spec or --version-id, not both")
	case f.specFile != "":
		file = f.specFile
	case f.versionID != "":
		var err error
		if file, err = versions.Locate(f.versionID, f.versionsDir); err != nil {
			return nil, usageError{err}
		}
	default:
		return nil, usagef("which version? give --version-id ID or --spec FILE")
	}
	s, err := versions.Load(file, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	for _, w := range s.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	if s.Options.Offline && !cmd.Flags().Changed("offline") {
		f.offline = true
	}
	return s, nil
}

// options builds the pipeline settings shared by every command.
func (f *specFlags) options(cmd *cobra.Command) realize.Options {
	cacheFlag, _ := cmd.Flags().GetString("cache-dir")
	return realize.Options{
		CacheDir: realize.CacheDir(cacheFlag),
		Offline:  f.offline,
		DryRun:   f.dryRun,
		Log:      cmd.ErrOrStderr(),
		LockFile: f.lockFile,
	}
}

// checkWheelsDir returns the absolute path of a --wheels-dir that exists.
func checkWheelsDir(dir string) (string, error) {
	if dir == "" {
		return "", nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", usagef("--wheels-dir %s: not a directory", dir)
	}
	return filepath.Abs(dir)
}

// checkOutput parses an --output and checks, before any work, that it can be
// written: oci:DIR[:TAG] whose DIR is not a file, or tar:FILE whose folder
// exists. registryHint says, in a bad --output's message, how the command
// reaches a registry instead.
func checkOutput(out, registryHint string) (layers.Location, error) {
	forms := "expected oci:DIR[:TAG] or tar:FILE (" + registryHint + ")"
	if !strings.HasPrefix(out, "oci:") && !strings.HasPrefix(out, "tar:") {
		return layers.Location{}, usagef("--output %q: %s", out, forms)
	}
	loc, err := layers.ParseLocation(out)
	if err != nil {
		return layers.Location{}, usagef("--output %q: %s", out, forms)
	}
	switch loc.Kind {
	case layers.OCILayout:
		if fi, err := os.Stat(loc.Path); err == nil && !fi.IsDir() {
			return loc, usagef("--output %q: %s is a file; an OCI layout is a folder", out, loc.Path)
		}
	case layers.Tarball:
		if fi, err := os.Stat(loc.Path); err == nil && fi.IsDir() {
			return loc, usagef("--output %q: %s is a folder; tar:FILE names a file", out, loc.Path)
		}
		dir := filepath.Dir(loc.Path)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return loc, usagef("--output %q: folder %s does not exist", out, dir)
		}
	}
	return loc, nil
}

// checkCounts refuses counts that would make a build do nothing or hang.
func checkCounts(jobs, maxLayers int) error {
	if jobs < 1 {
		return usagef("--jobs %d: expected 1 or more parallel uploads", jobs)
	}
	if maxLayers < 1 {
		return usagef("--max-layers %d: expected 1 or more layers, base included (containerd refuses more than 127)", maxLayers)
	}
	return nil
}

// holdCache keeps `cache prune` out of the cache while a command that writes
// it runs; a dry run writes nothing and takes no lock.
func holdCache(cmd *cobra.Command, opts realize.Options) (release func(), err error) {
	if opts.DryRun {
		return func() {}, nil
	}
	return realize.UseCache(cmd.Context(), opts.CacheDir, opts)
}
