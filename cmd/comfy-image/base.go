package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/layers/publish"
	"github.com/comfy-image/comfy-image/layers/rootfs"
)

// newBaseCmd packs a root filesystem folder into a base image, so making a
// base needs only debootstrap (or any tool that fills a folder), not a
// container engine and skopeo.
func newBaseCmd() *cobra.Command {
	var dir, output, arch string
	var env []string
	cmd := &cobra.Command{
		Use:   "base --rootfs DIR --output oci:DIR[:TAG]|tar:FILE",
		Short: "Pack a root filesystem folder (e.g. from debootstrap) into a one-layer base image",
		Long: `Pack a root filesystem folder into a one-layer OCI base image, the same digest
for the same folder: entries in name order, numeric owners, one modification time
(SOURCE_DATE_EPOCH, default 0), hard links kept, links never followed. Device
nodes, FIFOs and sockets are left out (the container runtime makes /dev) and
listed. The image's environment is PATH (--env adds or replaces variables).`,
		Example: `  debootstrap --variant=minbase --include=python3,python3-venv bookworm /var/tmp/rootfs
  comfy-image base --rootfs /var/tmp/rootfs --output oci:/var/tmp/base:bookworm
  comfy-image build --version-id wan22-fast --base oci:/var/tmp/base:bookworm --output oci:./out`,
		Args: usageArgs(noArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef("--rootfs DIR is required: the root filesystem folder to pack")
			}
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return usagef("--rootfs %s: not a folder", dir)
			}
			if output == "" {
				return usagef("--output is required: oci:DIR[:TAG] or tar:FILE")
			}
			if arch != "amd64" && arch != "arm64" {
				return usagef("--arch %q: expected amd64 or arm64 (what build takes)", arch)
			}
			loc, err := checkOutput(output, "base writes local images only; build --base reads them")
			if err != nil {
				return err
			}
			modTime, err := materialize.ModTimeFromEnv(os.Getenv)
			if err != nil {
				return usageError{err}
			}
			envs, err := baseEnv(env)
			if err != nil {
				return err
			}
			return packBase(cmd, dir, loc, rootfs.WithModTime(modTime), rootfs.WithArch(arch), rootfs.WithEnv(envs),
				rootfs.WithTempDir(filepath.Dir(filepath.Clean(loc.Path))))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "rootfs", "", "the root filesystem folder to pack")
	fl.StringVar(&output, "output", "", "where the image goes: oci:DIR[:TAG] (tag default latest) or tar:FILE")
	fl.StringVar(&arch, "arch", runtime.GOARCH, "the image's architecture (Go's name: amd64, arm64)")
	fl.StringArrayVar(&env, "env", nil, "KEY=VALUE in the image's environment (repeatable; PATH is set by default)")
	return cmd
}

// baseEnv is Debian's PATH with the --env settings applied over it.
func baseEnv(settings []string) ([]string, error) {
	env := []string{rootfs.DefaultPath}
	for _, kv := range settings {
		key, _, ok := strings.Cut(kv, "=")
		ok = ok && key != ""
		if !ok {
			return nil, usagef("--env %q: expected KEY=VALUE", kv)
		}
		replaced := false
		for i, e := range env {
			if k, _, _ := strings.Cut(e, "="); k == key {
				env[i], replaced = kv, true
			}
		}
		if !replaced {
			env = append(env, kv)
		}
	}
	return env, nil
}

func packBase(cmd *cobra.Command, dir string, loc layers.Location, opts ...rootfs.Option) error {
	log := cmd.ErrOrStderr()
	start := time.Now()
	fmt.Fprintf(log, "packing %s ...\n", dir)
	packed, err := rootfs.Pack(cmd.Context(), dir, opts...)
	if err != nil {
		return err
	}
	defer packed.Close()
	c := packed.Counts
	fmt.Fprintf(log, "packed %s, %s, %s, %s into %s in %.1fs\n",
		count(c.Files, "file", "files"), count(c.Dirs, "folder", "folders"), count(c.Symlinks, "symlink", "symlinks"),
		count(c.HardLinks, "hard link", "hard links"), humanSize(packed.Size), time.Since(start).Seconds())
	if len(c.Skipped) > 0 {
		fmt.Fprintf(log, "left out %d device nodes, FIFOs or sockets (the runtime makes /dev): %s\n", len(c.Skipped), summarize(c.Skipped, 5))
	}
	var pub publish.Publisher
	tag := loc.Tag
	switch loc.Kind {
	case layers.OCILayout:
		pub = publish.NewLayout(loc.Path)
	case layers.Tarball:
		pub, tag = publish.NewTarball(loc.Path, "localhost/comfy-image-base"), "latest"
	}
	if _, err := pub.Publish(cmd.Context(), packed.Image, tag); err != nil {
		return err
	}
	if err := pub.Close(); err != nil {
		return err
	}
	digest, err := packed.Image.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", loc, digest)
	return nil
}

func summarize(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, " ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], " "), len(items)-n)
}
