package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/publish"
	"github.com/comfy-image/comfy-image/versions"
)

func newBuildCmd() *cobra.Command {
	var f specFlags
	var o layers.BuildOptions
	var push, modelsRef, compression string
	var outputs []string
	var jobs int
	cmd := &cobra.Command{
		Use:   "build --version-id ID | --spec FILE --base IMAGE [--push REF] [--output oci:DIR[:TAG]|tar:FILE]",
		Short: "Build the app image (base + core + nodes + venv + config) and the models image",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.load(cmd)
			if err != nil {
				return err
			}
			if o.Base == "" {
				return usagef("--base IMAGE is required (a registry reference, oci:DIR[:TAG] or tar:FILE)")
			}
			if _, err := layers.ParseLocation(o.Base); err != nil {
				return usagef("--base: %v", err)
			}
			var outs []layers.Location
			if push != "" {
				outputs = append([]string{push}, outputs...)
			}
			for i, out := range outputs {
				loc, err := layers.ParseLocation(out)
				if err != nil || (i == 0 && push != "" && loc.Kind != "registry") {
					return usagef("--push/--output %q: %v", out, err)
				}
				outs = append(outs, loc)
			}
			switch o.Models {
			case "separate", "bake", "skip":
			default:
				return usagef("--models %q: expected separate, bake or skip", o.Models)
			}
			switch layers.Compression(compression) {
			case layers.Gzip, layers.Zstd:
				o.Compression = layers.Compression(compression)
			default:
				return usagef("--compression %q: expected gzip or zstd", compression)
			}
			if o.WheelsDir, err = checkWheelsDir(o.WheelsDir); err != nil {
				return err
			}
			o.Options = f.options(cmd)
			o.Locked = f.locked
			o.PushTo, o.ModelsRef = outs, modelsRef
			o.Out = cmd.OutOrStdout()
			o.Reporter = progress.New(cmd.ErrOrStderr())
			if f.dryRun {
				return layers.Plan(cmd.Context(), s, o, outs, cmd.OutOrStdout())
			}
			// The push has its own progress display, started at its first
			// upload: the build's is finished (Wait) by then.
			pushProgress := &lazyProgress{w: cmd.ErrOrStderr()}
			wo := layers.WriteOptions{ModelsRef: modelsRef, Jobs: jobs, Reporter: pushProgress, Log: cmd.OutOrStdout(),
				Names: map[string]string{}, MountRecord: filepath.Join(o.CacheDir, "registry-blobs.json")}
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
			res, err := layers.Build(cmd.Context(), s, o)
			if err != nil {
				return err
			}
			printParts(cmd, res)
			if len(outs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no --push or --output given: layers are built and cached only")
				return nil
			}
			for _, p := range res.Parts {
				if d, err := p.Layer.Digest(); err == nil {
					wo.Names[d.String()] = p.Kind + " " + p.Name
				}
			}
			err = writeRepacking(cmd, s, o, dests, res)
			pushProgress.Wait()
			return err
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.Base, "base", "", "base image with Python (registry ref, oci:DIR[:TAG] or tar:FILE)")
	fl.StringVar(&push, "push", "", "push the app image to REF (the models image goes to REF-models)")
	fl.StringArrayVar(&outputs, "output", nil, "also write to oci:DIR[:TAG] or tar:FILE (repeatable)")
	fl.StringVar(&o.Models, "models", "separate", "models: separate (own image), bake (into the app image at /models) or skip")
	fl.StringVar(&modelsRef, "models-ref", "", "where the models image goes (default: the app reference's tag + -models)")
	fl.StringVar(&o.WheelsDir, "wheels-dir", "", "take Python wheels only from this folder (pip --no-index --find-links)")
	fl.StringVar(&compression, "compression", "gzip", "app layer compression: gzip or zstd")
	fl.IntVar(&o.MaxLayers, "max-layers", 120, "most layers an image may have, base included (containerd refuses more than 127)")
	fl.StringVar(&o.HostPython, "python", "python3", "host Python whose pip fetches wheels for the base's Python")
	fl.IntVar(&jobs, "jobs", 4, "parallel layer uploads")
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
	if dropped, derr := layers.DropCachedLayer(cmd.Context(), o.CacheDir, bad.Digest); derr != nil || !dropped {
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

func printParts(cmd *cobra.Command, res *layers.Result) {
	out := cmd.OutOrStdout()
	for _, p := range res.Parts {
		d, _ := p.Layer.Digest()
		size, _ := p.Layer.Size()
		state := "cached"
		if p.Packed {
			state = "packed"
		}
		if p.Kind == "model" {
			state = "uncompressed"
		}
		if p.Remote {
			state = "in the registry"
		}
		fmt.Fprintf(out, "%-7s %-48s %10s  %s  %s\n", p.Kind, trim(p.Name, 48), progress.Size(size), d.String()[:19], state)
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

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show which layer of an image holds which part (core, node, venv, config, model)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			loc, err := layers.ParseLocation(args[0])
			if err != nil {
				return usageError{err}
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
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			info.Print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
