package main

import (
	"encoding/json"
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/layers/check"
)

func newCheckCmd() *cobra.Command {
	var opts check.Options
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check IMAGE [-- COMFYUI ARGS]",
		Short: "Run an app image; fail on nodes that cannot import and models ComfyUI does not list",
		Long: `check starts IMAGE (a name podman or docker can run) with its models: the
models image mounted at /models (--models-image) or a folder (--models-dir);
waits for ComfyUI to answer, and fails naming each custom node that failed to
import (with its error, such as a missing libGL.so.1), each model of the spec
that ComfyUI does not list, and says how long the start took. Arguments after
-- go to ComfyUI (e.g. -- --cpu on a machine without a GPU).`,
		Example: `  comfy-image check ghcr.io/acme/comfy:v1 --models-image ghcr.io/acme/comfy:v1-models -- --cpu
  comfy-image check localhost/comfy:dev --models-dir /data/models --json
  comfy-image check localhost/comfy:dev --run-arg=--ulimit=nofile=1024:1024 --timeout 20m`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.ModelsDir != "" && opts.ModelsImage != "" {
				return usagef("give --models-image or --models-dir, not both")
			}
			if opts.ModelsDir != "" {
				if fi, err := os.Stat(opts.ModelsDir); err != nil || !fi.IsDir() {
					return usagef("--models-dir %s: expected a folder", opts.ModelsDir)
				}
			}
			opts.ComfyArgs = args[1:]
			opts.Log = cmd.ErrOrStderr()
			rep, err := check.Run(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				enc.Encode(rep)
			} else {
				rep.Print(cmd.OutOrStdout())
			}
			if !rep.OK {
				return errors.New("check failed")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Engine, "engine", "", "container `ENGINE`: podman or docker (default: podman if installed)")
	fl.StringVar(&opts.ModelsImage, "models-image", "", "models `IMAGE` to mount at /models (must be in local storage)")
	fl.StringVar(&opts.ModelsDir, "models-dir", "", "`DIR` to mount at /models (read-only)")
	fl.StringArrayVar(&opts.RunArgs, "run-arg", nil, "an `ARG` of podman/docker run (repeatable), e.g. --run-arg=--memory=8g")
	fl.DurationVar(&opts.Timeout, "timeout", 10*time.Minute, "how long to wait for ComfyUI")
	fl.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
