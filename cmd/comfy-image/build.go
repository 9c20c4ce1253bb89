package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/check"
	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/layers/publish"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

func newBuildCmd() *cobra.Command {
	var f specFlags
	var o layers.BuildOptions
	var push, modelsRef, compression, models string
	var outputs []string
	var jobs int
	var asJSON bool
	var runCheck bool
	var checkOpts check.Options
	cmd := &cobra.Command{
		Use:   "build --version-id ID | --spec FILE --base IMAGE [--push REF] [--output OUT]",
		Short: "Build the app image (base + core + nodes + venv + config) and the models image",
		Example: `  comfy-image build --version-id wan22-fast --base oci:/var/tmp/base --output oci:./out
  comfy-image build --version-id wan22-fast --base python:3.12-slim --push ghcr.io/acme/comfy:v1
  comfy-image build --spec ./my.json --base tar:base.tar --output tar:app.tar --models skip
  SOURCE_DATE_EPOCH=1700000000 comfy-image build --spec ./my.json --base oci:/var/tmp/base --dry-run`,
		Args: usageArgs(noArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.load(cmd)
			if err != nil {
				return err
			}
			if o.Base == "" {
				return usagef("--base IMAGE is required (a registry reference, oci:DIR[:TAG] or tar:FILE)")
			}
			baseLoc, err := layers.ParseLocation(o.Base)
			if err != nil {
				return usagef("--base: %v", err)
			}
			var outs []layers.Location
			if push != "" {
				outputs = append([]string{push}, outputs...)
			}
			for i, out := range outputs {
				if i == 0 && push != "" {
					loc, err := layers.ParseLocation(out)
					if err != nil || loc.Kind != layers.Registry {
						return usagef("--push %q: expected a registry reference (HOST/REPO:TAG); use --output for oci:DIR[:TAG] or tar:FILE", out)
					}
					outs = append(outs, loc)
					continue
				}
				loc, err := checkOutput(out, "use --push for a registry")
				if err != nil {
					return err
				}
				outs = append(outs, loc)
			}
			for _, ref := range o.CacheFrom {
				if loc, err := layers.ParseLocation(ref); err != nil || loc.Kind != layers.Registry {
					return usagef("--cache-from %q: expected a registry reference (HOST/REPO:TAG)", ref)
				}
			}
			if err := checkCounts(jobs, o.MaxLayers); err != nil {
				return err
			}
			if _, err := materialize.ModTimeFromEnv(os.Getenv); err != nil {
				return usageError{err}
			}
			if o.Models, err = plan.ParseModelsMode(models); err != nil {
				return usageError{err}
			}
			switch materialize.Compression(compression) {
			case materialize.Gzip, materialize.Zstd:
				o.Compression = materialize.Compression(compression)
			default:
				return usagef("--compression %q: expected gzip or zstd", compression)
			}
			if o.WheelsDir, err = checkWheelsDir(o.WheelsDir); err != nil {
				return err
			}
			// A local folder or file named without oci: or tar: (a missing
			// layout is found when the base is read).
			if baseLoc.Kind == layers.Registry {
				if err := checkLocalImage(o.Base, baseLoc); err != nil {
					return usagef("--base %v", err)
				}
			}
			o.Options = f.options(cmd)
			o.Locked = f.locked
			o.PushTo, o.ModelsRef = outs, modelsRef
			human := humanOut(cmd, asJSON)
			o.Out = human
			o.Reporter = progress.New(cmd.ErrOrStderr())
			start := time.Now()
			rep := newReport("build")
			rep.VersionID, rep.SpecFile, rep.LockFile = s.VersionID, s.File, o.LockPath(s.VersionID)
			if f.dryRun {
				plan, err := layers.PlanBuild(cmd.Context(), s, o, outs)
				if err != nil {
					return err
				}
				plan.Print(human)
				if !asJSON {
					return nil
				}
				rep.planFrom(plan)
				rep.timed("total_seconds", start)
				return rep.print(cmd.OutOrStdout())
			}
			// The push has its own progress display, started at its first
			// upload: the build's is finished (Wait) by then.
			pushProgress := &lazyProgress{w: cmd.ErrOrStderr()}
			wo := layers.WriteOptions{ModelsRef: modelsRef, Jobs: jobs, Reporter: pushProgress, Log: human,
				Names: map[string]string{}, MountRecord: filepath.Join(o.CacheDir, "registry-blobs.json")}
			if base, _ := layers.ParseLocation(o.Base); base.Kind == layers.Registry {
				wo.MountFrom = append(wo.MountFrom, base.Ref.Context())
			}
			// Layers a --cache-from image lists are mounted from its
			// repository: the probe asks pull access to it too.
			for _, ref := range o.CacheFrom {
				if loc, _ := layers.ParseLocation(ref); loc.Kind == layers.Registry {
					wo.MountFrom = append(wo.MountFrom, loc.Ref.Context())
				}
			}
			dests, err := layers.NewOutputs(outs, s.VersionID, wo)
			if err != nil {
				return usageError{err}
			}
			// A dead registry or a refused credential fails here, before
			// any packing.
			if err := dests.Probe(cmd.Context()); err != nil {
				return err
			}
			o.Transports = dests.Transports()
			release, err := holdCache(cmd, o.Options)
			if err != nil {
				return err
			}
			defer release()
			// The models image's blobs go up while the app image is still
			// made, shown as plain lines beside the build's own output;
			// the tags move at the end, when both images are complete.
			early, stopEarly := context.WithCancel(cmd.Context())
			defer stopEarly()
			first := o
			first.Early = dests.EarlyUploads(early, progress.NewPlain(cmd.ErrOrStderr(), 10*time.Second))
			res, err := layers.Build(cmd.Context(), s, first)
			if err != nil {
				stopEarly()
				_ = dests.WaitEarly() // the build's error is the one to tell
				return err
			}
			if err := realize.RecordUse(o.CacheDir, res.Lock); err != nil {
				return fmt.Errorf("record what the build used in the cache: %w", err)
			}
			rep.timed("build_seconds", start)
			printParts(human, res)
			report := func() error {
				if !asJSON {
					return nil
				}
				rep.resolvedFrom(res.Lock)
				rep.buildFrom(res)
				rep.Outputs = outputs
				rep.timed("total_seconds", start)
				return rep.print(cmd.OutOrStdout())
			}
			if len(outs) == 0 {
				fmt.Fprintln(human, "no --push or --output given: layers are built and cached only")
				if runCheck {
					if err := checkBuilt(cmd, res, s.VersionID, checkOpts); err != nil {
						return err
					}
				}
				return report()
			}
			for _, p := range res.Parts {
				if d, err := p.Layer.Digest(); err == nil {
					wo.Names[d.String()] = p.Label()
				}
			}
			written := time.Now()
			err = writeRepacking(cmd, s, o, dests, res)
			pushProgress.Wait()
			if err != nil {
				return err
			}
			rep.timed("write_seconds", written)
			if runCheck {
				if err := checkBuilt(cmd, res, s.VersionID, checkOpts); err != nil {
					return err
				}
			}
			return report()
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.Base, "base", "", "base `IMAGE` with Python: registry ref, oci:DIR[:TAG] or tar:FILE")
	fl.StringVar(&push, "push", "", "push the app image to `REF` (the models image to REF-models)")
	fl.StringArrayVar(&o.CacheFrom, "cache-from", nil, "also trust layer keys and base facts of the image at `REF` (repeatable)")
	fl.StringArrayVar(&outputs, "output", nil, "also write to `OUT`: oci:DIR[:TAG] or tar:FILE (repeatable)")
	fl.StringVar(&models, "models", "separate", "`MODE`: separate image, bake (in /models) or skip")
	fl.StringVar(&modelsRef, "models-ref", "", "`REF` of the models image (default: --push REF's tag + -models)")
	fl.StringVar(&o.WheelsDir, "wheels-dir", "", "take Python wheels only from this `DIR` (pip --no-index)")
	fl.StringVar(&compression, "compression", "gzip", "app layer compression `ALGO`: gzip or zstd")
	fl.IntVar(&o.MaxLayers, "max-layers", 120, "at most `N` layers per image, base included (max 127)")
	fl.StringVar(&o.HostPython, "python", "python3", "host `PYTHON` whose pip fetches the base's wheels")
	fl.IntVar(&jobs, "jobs", 4, "`N` parallel layer uploads")
	fl.BoolVar(&asJSON, "json", false, "JSON on stdout (schema versions/output.schema.json); text on stderr")
	fl.BoolVar(&runCheck, "check", false, "then run comfy-image check on the built image (podman or docker)")
	fl.StringArrayVar(&checkOpts.RunArgs, "check-run-arg", nil, "with --check: an `ARG` of podman run or docker run (repeatable)")
	fl.StringArrayVar(&checkOpts.ComfyArgs, "check-comfy-arg", nil, "with --check: a ComfyUI `ARG` (repeatable), e.g. --check-comfy-arg=--cpu")
	return cmd
}

// writeRepacking publishes res; when a registry finds the bytes of a
// cached layer damaged, the layer is dropped from the cache, packed again
// and the images are published once more (once).
func writeRepacking(cmd *cobra.Command, s *versions.Spec, o layers.BuildOptions, outputs *layers.Outputs, res *layers.Result) error {
	err := outputs.Write(cmd.Context(), res)
	var bad *publish.LayerError
	if !errors.As(err, &bad) || !bad.Damaged() {
		return err
	}
	// A model layer's checked stream forgets its digest itself when its
	// bytes are found damaged (materialize.DamagedError): repack it too.
	var forgot *materialize.DamagedError
	if dropped, derr := materialize.DropCachedLayer(cmd.Context(), o.CacheDir, bad.Digest); derr != nil || (!dropped && !errors.As(err, &forgot)) {
		return err // not a cached layer: nothing to repack
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s %s: the cached layer is damaged (%v); dropped from the cache, packing it again\n", bad.Layer, bad.Digest, bad.Err)
	if res, err = layers.Build(cmd.Context(), s, o); err != nil {
		return err
	}
	return outputs.Write(cmd.Context(), res)
}

// lazyProgress makes its progress display at the first Start, so two
// displays never draw on one terminal at once.
type lazyProgress struct {
	w    io.Writer
	once sync.Once
	r    progress.Reporter
}

func (l *lazyProgress) Start(name string, total int64) progress.Tracker {
	l.once.Do(func() { l.r = progress.New(l.w) })
	return l.r.Start(name, total)
}

func (l *lazyProgress) Wait() {
	l.once.Do(func() {}) // none was made: nothing to wait for
	if l.r != nil {
		l.r.Wait()
	}
}

// checkBuilt loads the built images into podman's (or docker's) storage
// and checks the app image with the models image mounted.
func checkBuilt(cmd *cobra.Command, res *layers.Result, versionID string, opts check.Options) error {
	digest, err := res.App.Digest()
	if err != nil {
		return err
	}
	ref := "localhost/comfy-image-check/" + strings.ToLower(versionID) + ":" + digest.Hex[:12]
	if err := check.Load(cmd.Context(), opts.Engine, res.App, ref); err != nil {
		return err
	}
	if res.Models != nil {
		opts.ModelsImage = ref + "-models"
		if err := check.Load(cmd.Context(), opts.Engine, res.Models, opts.ModelsImage); err != nil {
			return err
		}
	}
	opts.Log = cmd.ErrOrStderr()
	rep, err := check.Run(cmd.Context(), ref, opts)
	if err != nil {
		return err
	}
	rep.Print(cmd.OutOrStdout())
	if !rep.OK {
		return errors.New("check failed")
	}
	return nil
}

// printParts prints one line per layer, numbered by its place in its image
// as inspect numbers it, in 100 columns however long the node names.
func printParts(out io.Writer, res *layers.Result) {
	index := layerIndex(res.App)
	if res.Models != nil {
		for d, i := range layerIndex(res.Models) {
			index[d] = i
		}
	}
	for _, p := range res.Parts {
		d, _ := p.Layer.Digest()
		size, _ := p.Layer.Size()
		state := "cached"
		if p.Action == plan.Pack {
			state = "packed"
		}
		if p.Kind == plan.Model {
			state = "uncompressed"
		}
		if p.Action == plan.ReuseRegistry {
			state = "in every output"
		}
		fmt.Fprintf(out, "%3d  %-7s %-37s %10s  %s  %s\n", index[d.String()], p.Kind, fit(p.Name, 37), humanSize(size), d.String()[:19], state)
	}
	if d, err := res.App.Digest(); err == nil {
		fmt.Fprintf(out, "app image    %s\n", d)
	}
	if res.Models != nil {
		if d, err := res.Models.Digest(); err == nil {
			fmt.Fprintf(out, "models image %s\n", d)
		}
	}
}

// layerIndex numbers an image's layers from 1, by digest.
func layerIndex(img v1.Image) map[string]int {
	index := map[string]int{}
	if m, err := img.Manifest(); err == nil {
		for i, l := range m.Layers {
			index[l.Digest.String()] = i + 1
		}
	}
	return index
}

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show which layer of an image holds which part (core, node, venv, config, model)",
		Example: `  comfy-image inspect oci:./out
  comfy-image inspect oci:./out:wan22-fast-models
  comfy-image inspect --json registry.example.com/comfy:v1`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("inspect takes one image, got %d arguments: a registry reference (HOST/REPO:TAG), oci:DIR[:TAG] or tar:FILE", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now()
			loc, err := layers.ParseLocation(args[0])
			if err != nil {
				return usageError{err}
			}
			if err := checkLocalImage(args[0], loc); err != nil {
				return err
			}
			img, err := layers.ReadImage(loc)
			if err != nil {
				return err
			}
			info, err := layers.Inspect(img)
			if err != nil {
				return err
			}
			if asJSON {
				rep := newReport("inspect")
				rep.VersionID, rep.ImageInfo = info.VersionID, &info
				rep.timed("total_seconds", start)
				return rep.print(cmd.OutOrStdout())
			}
			info.Print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document (versions/output.schema.json)")
	return cmd
}

// checkLocalImage finds before any network access the mistakes of an image
// given on this machine: a folder or file named without oci: or tar: (which
// would be looked up on Docker Hub), an OCI layout that is not there, a tar
// file that is not there. They are usage errors (exit 2).
func checkLocalImage(arg string, loc layers.Location) error {
	switch loc.Kind {
	case layers.Registry:
		if fi, err := os.Stat(arg); err == nil {
			if fi.IsDir() {
				return usagef("%q is a folder here, not a registry reference: did you mean oci:%s?", arg, arg)
			}
			return usagef("%q is a file here, not a registry reference: did you mean tar:%s?", arg, arg)
		}
	case layers.OCILayout:
		if _, err := os.Stat(filepath.Join(loc.Path, "index.json")); err != nil {
			return usagef("%q: %s is not an OCI layout (a folder with index.json, as build --output oci:DIR writes)", arg, loc.Path)
		}
	case layers.Tarball:
		if fi, err := os.Stat(loc.Path); err != nil || fi.IsDir() {
			return usagef("%q: %s is not a file (build --output tar:FILE writes one)", arg, loc.Path)
		}
	}
	return nil
}
