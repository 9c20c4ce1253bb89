package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set with -ldflags "-X main.version=..." by release builds.
var version = ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the tool's module version and VCS revision",
		Example: "  comfy-image version",
		Args:    usageArgs(noArgs),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
		},
	}
}

// versionLine is "comfy-image <module version> (revision <rev>[, modified], <go>)"
// from the build information Go embeds in the binary.
func versionLine() string {
	v, rev, modified, goVersion := version, "unknown", false, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if modified {
		rev += ", modified"
	}
	return fmt.Sprintf("comfy-image %s (revision %s, %s)", v, rev, goVersion)
}
