package main

import (
	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/realize"
)

func newRealizeCmd() *cobra.Command {
	var f specFlags
	var o realize.RealizeOptions
	cmd := &cobra.Command{
		Use:   "realize --version-id ID | --spec FILE [--target DIR]",
		Short: "Lay a version out on disk: checkouts, venv, models, extra_model_paths.yaml",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.load(cmd)
			if err != nil {
				return err
			}
			if o.WheelsDir, err = checkWheelsDir(o.WheelsDir); err != nil {
				return err
			}
			if !cmd.Flags().Changed("skip-models") {
				o.SkipModels = s.Options.SkipModels
			}
			o.Options = f.options(cmd)
			o.Locked = f.locked
			o.Out = cmd.OutOrStdout()
			o.Reporter = progress.New(cmd.ErrOrStderr())
			return realize.Realize(cmd.Context(), s, o)
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.Target, "target", "", "COMFY_HOME (default /runpod-volume/comfy-<id>, else $HOME/comfy-<id>, else ./comfy-<id>)")
	fl.StringVar(&o.ModelsDir, "models-dir", "", "MODELS_DIR (default <target>/models)")
	fl.StringVar(&o.WheelsDir, "wheels-dir", "", "install Python packages only from this folder of wheels (pip --no-index --find-links)")
	fl.BoolVar(&o.SkipModels, "skip-models", false, "do not download or place models")
	fl.BoolVar(&o.Force, "force", false, "overwrite tracked files changed since the last realize, and realize into a non-empty folder (files you added are never overwritten)")
	fl.StringVar(&o.Python, "python", "python3", "host Python that creates the venv")
	return cmd
}
