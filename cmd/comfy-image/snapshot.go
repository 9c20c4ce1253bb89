package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
	managersnap "github.com/comfy-image/comfy-image/versions/snapshot"
)

func newImportCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "import", Short: "Make a spec from what another tool wrote",
		Example: "  comfy-image import snapshot snapshot.json --version-id mine"}
	cmd.AddCommand(newImportSnapshotCmd())
	return groupCommand(cmd)
}

func newExportCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "export", Short: "Write a locked version in another tool's format",
		Example: "  comfy-image export snapshot --version-id wan22-fast --output snapshot.json"}
	cmd.AddCommand(newExportSnapshotCmd())
	return groupCommand(cmd)
}

func newImportSnapshotCmd() *cobra.Command {
	var versionID, output, comfyRepo string
	var force bool
	cmd := &cobra.Command{
		Use:   "snapshot FILE [--version-id ID] [--output FILE]",
		Short: "Make a spec from a ComfyUI-Manager snapshot (JSON, YAML) or a comfy-lock.yaml",
		Example: `  comfy-image import snapshot user/default/ComfyUI-Manager/snapshots/2025-01-01_snapshot.json
  comfy-image import snapshot 2025-01-01_12-00-00_snapshot.json --version-id mine
  comfy-image import snapshot comfy-lock.yaml --output versions/mine.json --force`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := args[0]
			if versionID == "" {
				versionID = versionIDFromFile(in)
			}
			if !versionIDPattern.MatchString(versionID) {
				return usagef("--version-id %q: expected letters, digits, '.', '_' or '-' (at most 128), starting with a letter or digit", versionID)
			}
			if output == "" {
				output = filepath.Join("versions", versionID+".json")
			}
			if _, err := os.Stat(output); err == nil && !force {
				return usagef("%s exists; give --output FILE or --force to replace it", output)
			}
			f, err := managersnap.Read(in)
			if err != nil {
				return err
			}
			res, err := managersnap.Import(f, managersnap.ImportOptions{VersionID: versionID, ComfyRepo: comfyRepo, SpecFile: output})
			if err != nil {
				return err
			}
			errOut := cmd.ErrOrStderr()
			for _, w := range res.Warnings {
				fmt.Fprintln(errOut, "warning:", w)
			}
			for _, l := range res.LeftOut {
				fmt.Fprintln(errOut, "left out:", l)
			}
			if err := fileutil.WriteAtomic(output, res.Spec, 0o644); err != nil {
				return fmt.Errorf("write spec: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (version %s) from %s\n", output, versionID, in)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&versionID, "version-id", "", "version `ID` of the spec (default: the file name without extension)")
	fl.StringVar(&output, "output", "", "spec `FILE` to write (default versions/<ID>.json)")
	fl.StringVar(&comfyRepo, "comfy-repo", managersnap.DefaultComfyRepo, "the core's repo `URL`")
	fl.BoolVar(&force, "force", false, "replace an existing output file")
	return cmd
}

var versionIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

var notIDChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// versionIDFromFile is a version id from a file name: Manager's
// "2024-05-01_10-00-00_snapshot.json" gives "2024-05-01_10-00-00_snapshot".
func versionIDFromFile(file string) string {
	base := filepath.Base(file)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	id := strings.Trim(notIDChars.ReplaceAllString(base, "-"), "-._")
	if id == "" {
		return "imported"
	}
	return id
}

func newExportSnapshotCmd() *cobra.Command {
	var versionID, output string
	cmd := &cobra.Command{
		Use:   "snapshot --version-id ID [--output FILE]",
		Short: "Write a version's lock as a ComfyUI-Manager snapshot (for cm-cli restore-snapshot)",
		Example: `  comfy-image export snapshot --version-id wan22-fast --output wan22-fast.json
  comfy-image export snapshot --version-id wan22-fast > snapshot.json`,
		Args: usageArgs(noArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if versionID == "" {
				return usagef("which version? give --version-id ID")
			}
			if !versionIDPattern.MatchString(versionID) {
				return usagef("--version-id %q: expected letters, digits, '.', '_' or '-' (at most 128), starting with a letter or digit", versionID)
			}
			cacheFlag, _ := cmd.Flags().GetString("cache-dir")
			l, err := versions.ReadLock(versions.LockPath(realize.CacheDir(cacheFlag), versionID))
			if err != nil {
				return err
			}
			if !managersnap.HasPythonSet(l) {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the snapshot has no pip list (\"pips\": {}): no Python set is locked for %s yet (lock pins the repositories; realize and build resolve the packages); run comfy-image realize --version-id %s --target DIR or comfy-image build --version-id %s first\n", versionID, versionID, versionID)
			}
			data := managersnap.FromLock(l).ManagerJSON()
			if output == "" || output == "-" {
				_, err := cmd.OutOrStdout().Write(append(data, '\n'))
				return err
			}
			if err := fileutil.WriteAtomic(output, data, 0o644); err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", output)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&versionID, "version-id", "", "version `ID` whose lock to export")
	fl.StringVar(&output, "output", "", "snapshot `FILE` to write (default: stdout); .json for cm-cli restore-snapshot")
	return cmd
}
