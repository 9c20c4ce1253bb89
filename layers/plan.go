package layers

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/versions"
)

// Plan prints the layers a build would make, which are already packed in
// the cache, and which a registry output already has; nothing is written.
func Plan(ctx context.Context, spec *versions.Spec, opts BuildOptions, outs []Location, w io.Writer) error {
	opts.defaults()
	b := &builder{spec: spec, opts: opts, cache: Cache{Dir: filepath.Join(opts.CacheDir, "layers")}}
	var err error
	if b.modTime, err = ModTimeFromEnv(opts.Getenv); err != nil {
		return err
	}
	fmt.Fprintf(w, "dry run: build %s (%s) on %s, models %s\n", spec.VersionID, spec.File, opts.Base, opts.Models)
	l, _, err := realize.ReadCovering(spec, opts.Options, opts.Models == "skip")
	if err != nil {
		if opts.Locked {
			return fmt.Errorf("--locked: %w", err)
		}
		fmt.Fprintf(w, "  lock: %v; would resolve:\n", err)
		for _, line := range realize.PlanRepos(spec, opts.Options) {
			fmt.Fprintln(w, "    "+line)
		}
		fmt.Fprintln(w, "  layers: core, one per custom node, venv, config (commits not known before the lock)")
		return nil
	}
	b.lock = l
	loc, err := ParseLocation(opts.Base)
	if err != nil {
		return fmt.Errorf("--base: %w", err)
	}
	if b.base, err = ReadImage(loc, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("--base: %w", err)
	}
	baseLayers, _ := b.base.Layers()
	fmt.Fprintf(w, "  base: %d layers\n", len(baseLayers))
	var known []string // digests of cached layers, for the registry check
	show := func(kind, name, key string) {
		if lay, ok := b.cache.Lookup(key); ok {
			d, _ := lay.Digest()
			size, _ := lay.Size()
			fmt.Fprintf(w, "  reuse   %-7s %-40s %s (%s)\n", kind, name, d, progress.Size(size))
			known = append(known, d.String())
			return
		}
		fmt.Fprintf(w, "  pack    %-7s %s\n", kind, name)
	}
	show("core", "ComfyUI @ "+l.Comfy.Commit[:12], b.keyOf("core", "ComfyUI", l.Comfy.Commit, treeKey(versions.Node{})))
	for i, n := range l.CustomNodes {
		var node versions.Node
		if i < len(spec.CustomNodes) {
			node = spec.CustomNodes[i]
		}
		show("node", n.Name+" @ "+n.Commit[:12], b.keyOf("node", n.Name, n.Commit, treeKey(node)))
	}
	fmt.Fprintf(w, "  venv    %d locked packages for the base's Python (resolved by pip when none are locked)\n", len(l.Python.ImagePackages))
	fmt.Fprintln(w, "  config  extra_model_paths.yaml (base_path /models), comfy.env, entrypoint.sh, worker.py, comfy-image.json")
	if opts.Models != "skip" {
		store := models.Store{Dir: filepath.Join(opts.CacheDir, "models")}
		for _, m := range spec.Models {
			lm, ok := realize.LockedModelFor(l, m)
			_, stored := store.Has(lm.SHA256)
			switch {
			case ok && stored:
				fmt.Fprintf(w, "  model   %-40s in the cache (%s), layer %s\n", m.Dest(), progress.Size(lm.Size), opts.Models)
			case ok:
				fmt.Fprintf(w, "  model   %-40s would download %s (%s)\n", m.Dest(), m.Source, progress.Size(lm.Size))
			default:
				fmt.Fprintf(w, "  model   %-40s would download %s (size unknown until fetched)\n", m.Dest(), m.Source)
			}
		}
	}
	for _, out := range outs {
		if out.Kind != "registry" {
			fmt.Fprintf(w, "  write   %s\n", out)
			continue
		}
		for _, d := range known {
			h, err := parseHash(d)
			if err != nil {
				continue
			}
			has, err := BlobExists(ctx, out.Ref.Context(), h, nil)
			switch {
			case err != nil:
				fmt.Fprintf(w, "  push    %s: cannot ask the registry: %v\n", out, err)
				return nil
			case has:
				fmt.Fprintf(w, "  push    %s: %s already there\n", out, d)
			default:
				fmt.Fprintf(w, "  push    %s: would upload %s\n", out, d)
			}
		}
	}
	return nil
}

func parseHash(s string) (v1.Hash, error) { return v1.NewHash(s) }
