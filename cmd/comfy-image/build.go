package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/check"
	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/layers"
)

func newBuildCmd() *cobra.Command {
	var f specFlags
	var o layers.BuildOptions
	var push, modelsRef, compression string
	var outputs []string
	var jobs int
	var runCheck bool
	var checkOpts check.Options
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
			res, err := layers.Build(cmd.Context(), s, o)
			if err != nil {
				return err
			}
			printParts(cmd, res)
			if len(outs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no --push or --output given: layers are built and cached only")
			} else {
				names := map[string]string{}
				for _, p := range res.Parts {
					if d, err := p.Layer.Digest(); err == nil {
						names[d.String()] = p.Kind + " " + p.Name
					}
				}
				if err := layers.Write(cmd.Context(), res, outs, s.VersionID, layers.WriteOptions{
					ModelsRef: modelsRef, Jobs: jobs, Reporter: o.Reporter, Log: cmd.OutOrStdout(), Names: names,
				}); err != nil {
					return err
				}
			}
			if runCheck {
				return checkBuilt(cmd, res, s.VersionID, checkOpts)
			}
			return nil
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
	fl.BoolVar(&runCheck, "check", false, "then run `comfy-image check` on the built image (podman or docker)")
	fl.StringArrayVar(&checkOpts.RunArgs, "check-run-arg", nil, "with --check: extra argument of `podman run` (repeatable)")
	fl.StringArrayVar(&checkOpts.ComfyArgs, "check-comfy-arg", nil, "with --check: ComfyUI argument (repeatable), e.g. --check-comfy-arg=--cpu")
	return cmd
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
