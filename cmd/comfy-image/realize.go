package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

func newRealizeCmd() *cobra.Command {
	var f specFlags
	var o realize.RealizeOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "realize --version-id ID | --spec FILE [--target DIR]",
		Short: "Lay a version out on disk: checkouts, venv, models, extra_model_paths.yaml",
		Example: `  comfy-image realize --version-id wan22-fast --target ./comfy
  comfy-image realize --spec ./my.json --target /workspace/comfy --skip-models
  comfy-image realize --version-id wan22-fast --offline --wheels-dir ./wheels`,
		Args: usageArgs(noArgs),
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
			o.Out = humanOut(cmd, asJSON)
			o.Reporter = progress.New(cmd.ErrOrStderr())
			release, err := holdCache(cmd, o.Options)
			if err != nil {
				return err
			}
			defer release()
			start := time.Now()
			if err := realize.Realize(cmd.Context(), s, o); err != nil || !asJSON {
				return err
			}
			rep := newReport("realize")
			rep.SpecFile, rep.LockFile, rep.Target = s.File, o.LockPath(s.VersionID), o.Target
			if rep.Target == "" {
				rep.Target = realize.DefaultTarget(s.VersionID)
			}
			if !f.dryRun {
				l, err := versions.ReadLock(rep.LockFile)
				if err != nil {
					return err
				}
				rep.resolvedFrom(l)
			}
			rep.VersionID = s.VersionID
			rep.timed("total_seconds", start)
			return rep.print(cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.Target, "target", "", "COMFY_HOME `DIR` (default: comfy-<id> in /runpod-volume, ~ or .)")
	fl.StringVar(&o.ModelsDir, "models-dir", "", "MODELS_DIR `DIR` (default <target>/models)")
	fl.StringVar(&o.WheelsDir, "wheels-dir", "", "install Python packages only from this `DIR` of wheels (pip --no-index)")
	fl.BoolVar(&o.SkipModels, "skip-models", false, "do not download or place models")
	fl.BoolVar(&o.Force, "force", false, "overwrite changed tracked files; use a non-empty folder (your files stay)")
	fl.StringVar(&o.Python, "python", "python3", "host `PYTHON` that creates the venv")
	fl.BoolVar(&asJSON, "json", false, "JSON on stdout (schema versions/output.schema.json); text on stderr")
	return cmd
}
