package main

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set with -ldflags "-X main.version=..." by release builds.
var version = ""

var errNotBuilt = errors.New("not built yet")

func newBuildCmd() *cobra.Command {
	var f specFlags
	cmd := &cobra.Command{
		Use:   "build --version-id ID | --spec FILE --base IMAGE",
		Short: "Build the app image and the models image",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := f.load(cmd); err != nil {
				return err
			}
			return fmt.Errorf("build: %w", errNotBuilt)
		},
	}
	f.register(cmd)
	return cmd
}

func newInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show which layer of an image holds which part",
		Args:  cobra.ExactArgs(1),
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("inspect: %w", errNotBuilt)
		},
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the tool's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v := version
			if v == "" {
				v = "devel"
				if bi, ok := debug.ReadBuildInfo(); ok {
					for _, s := range bi.Settings {
						if s.Key == "vcs.revision" {
							v += " " + s.Value
						}
					}
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "comfy-image", v)
		},
	}
}
