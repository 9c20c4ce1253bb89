// Command comfy-image turns a versioned ComfyUI spec into a directory on disk
// or OCI images. The commands here only parse flags, call the packages and
// map errors to exit codes: 0 ok, 1 failure, 2 bad usage or bad spec, 130
// interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

// Exit codes, documented in --help and the README.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// exitCodesHelp is the exit-code table every command's help ends with.
const exitCodesHelp = `Exit codes:
  0    success
  1    failure (network, registry, pip, disk, ...)
  2    bad usage or bad spec (nothing was done)
  130  interrupted (Ctrl-C or SIGTERM); rerun the same command to resume`

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
		return exitOK
	}
	if ctx.Err() != nil {
		cacheFlag, _ := root.PersistentFlags().GetString("cache-dir")
		fmt.Fprintf(stderr, "comfy-image: interrupted: finished clones, downloads, wheels and layers, and partial downloads, are kept in the cache %s; run the same command again to resume\n", realize.CacheDir(cacheFlag))
		return exitInterrupted
	}
	fmt.Fprintln(stderr, "comfy-image: error:", err)
	return exitCode(err)
}

func exitCode(err error) int {
	var spec *versions.SpecError
	var usage usageError
	// Bad input found by a package: a refused requirements line, a crafted
	// node tree, a bad --target.
	var bad interface{ BadInput() bool }
	if errors.As(err, &spec) || errors.As(err, &usage) || errors.As(err, &bad) && bad.BadInput() {
		return exitUsage
	}
	return exitFailure
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "comfy-image",
		Short: "Build ComfyUI installations and OCI images from versioned specs",
		Long: `comfy-image locks a ComfyUI spec (versions/<id>.json), lays it out on disk
(realize) and builds OCI images (build): an app image and a models image.`,
		Example: `  comfy-image lock --version-id wan22-fast
  comfy-image realize --version-id wan22-fast --target ./comfy
  comfy-image build --version-id wan22-fast --base oci:/var/tmp/base --output oci:./out
  comfy-image inspect oci:./out
  comfy-image cache du`,
		// Runnable so an unknown command reaches RunE and exits 2, with
		// cobra's suggestions, instead of cobra's untyped error (exit 1).
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return unknownCommand(cmd, args[0])
		},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SuggestionsMinimumDistance = 2
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(flagError)
	root.PersistentFlags().String("cache-dir", "", "cache root (default $COMFY_CACHE or ~/.comfy-cache)")
	root.AddCommand(
		newLockCmd(),
		newRealizeCmd(),
		newBuildCmd(),
		newInspectCmd(),
		newImportCmd(),
		newExportCmd(),
		newCacheCmd(),
		newCheckCmd(),
		newBaseCmd(),
		newVersionCmd(),
	)
	addHelpFooters(root)
	return root
}

// addHelpFooters appends the environment variables each command reads and
// the exit-code table to every command's help.
func addHelpFooters(root *cobra.Command) {
	base := (&cobra.Command{}).UsageTemplate() // cobra's, before any footer
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		tmpl := base
		if env := envHelp[c.Name()]; env != "" {
			tmpl += "\nEnvironment:\n" + env + "\n"
		}
		c.SetUsageTemplate(tmpl + "\n" + exitCodesHelp + "\n")
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

const (
	envCache = "  COMFY_CACHE        cache root (default ~/.comfy-cache; --cache-dir wins)\n"
	envHF    = "  HF_TOKEN           Hugging Face token for gated models (never written anywhere)\n" +
		"  HF_ENDPOINT        Hugging Face endpoint (default https://huggingface.co)\n"
	envSpec   = "  (any ${VAR})       variables the spec's env refers to\n"
	envEpoch  = "  SOURCE_DATE_EPOCH  timestamp of every file in the layers (seconds; default 0)\n"
	envDocker = "  DOCKER_CONFIG      folder of config.json with registry credentials (default ~/.docker)\n"
)

// envHelp names the environment variables each command reads.
var envHelp = map[string]string{
	"comfy-image": strings.TrimRight(envCache+envHF+envEpoch+envDocker, "\n"),
	"lock":        strings.TrimRight(envCache+envHF+envSpec, "\n"),
	"realize":     strings.TrimRight(envCache+envHF+envSpec, "\n"),
	"build":       strings.TrimRight(envCache+envHF+envSpec+envEpoch+envDocker, "\n"),
	"inspect":     strings.TrimRight(envDocker, "\n"),
	"cache":       strings.TrimRight(envCache, "\n"),
	"du":          strings.TrimRight(envCache, "\n"),
	"prune":       strings.TrimRight(envCache, "\n"),
	"base":        strings.TrimRight(envEpoch, "\n"),
}

// unknownCommand is the usage error for a subcommand parent does not have,
// with cobra's suggestions.
func unknownCommand(parent *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, parent.CommandPath())
	if s := parent.SuggestionsFor(name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{fmt.Errorf("%s (see %s --help)", msg, parent.CommandPath())}
}

// groupCommand makes a command that only holds subcommands (cache, import,
// export) runnable, so that a mistyped subcommand is a usage error with
// suggestions (exit 2) and not cobra's help with exit 0.
func groupCommand(c *cobra.Command) *cobra.Command {
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		return unknownCommand(cmd, args[0])
	}
	c.SuggestionsMinimumDistance = 2
	return c
}

// usageArgs makes cobra's argument errors usage errors (exit code 2).
// noArgs refuses positional arguments, naming the first; cobra.NoArgs
// called it an unknown command.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes no arguments (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
	}
	return nil
}

func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
