// Command comfy-image turns a versioned ComfyUI spec into a directory on disk
// or OCI images. The commands here only parse flags, call the packages and
// map errors to exit codes: 0 ok, 1 failure, 2 bad usage or bad spec.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/versions"
)

// usageError is bad input on the command line: exit code 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "comfy-image: error:", err)
	return exitCode(err)
}

func exitCode(err error) int {
	var spec *versions.SpecError
	var usage usageError
	if errors.As(err, &spec) || errors.As(err, &usage) {
		return 2
	}
	// Bad input found by a package (a crafted node tree, a bad --target,
	// a refused requirements line).
	var bad interface{ BadInput() bool }
	if errors.As(err, &bad) && bad.BadInput() {
		return 2
	}
	return 1
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "comfy-image",
		Short:         "Build ComfyUI installations and OCI images from versioned specs",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().String("cache-dir", "", "cache root (default $COMFY_CACHE or ~/.comfy-cache)")
	root.AddCommand(
		newLockCmd(),
		newRealizeCmd(),
		newBuildCmd(),
		newInspectCmd(),
		newImportCmd(),
		newExportCmd(),
		newVersionCmd(),
	)
	return root
}

// usageArgs makes cobra's argument errors usage errors (exit code 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
