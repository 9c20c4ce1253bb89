// Package rootfs packs a root filesystem folder (for example one made by
// debootstrap) into a one-layer OCI image, deterministically: the same
// folder gives the same digest on any machine and at any time.
//
// The layer keeps what a container needs of the folder: directories,
// regular files, symbolic links and hard links, with their permission bits
// (setuid, setgid and sticky included) and numeric owners. It leaves out
// what a container runtime provides or what would make the digest depend on
// the machine: device nodes, FIFOs and sockets (the runtime mounts /dev),
// user and group names, extended attributes, and times (every entry gets
// one fixed modification time).
package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// DefaultPath is the PATH of Debian's root user, which the image's
// environment gets unless WithEnv says otherwise.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type options struct {
	modTime time.Time
	arch    string
	env     []string
	tempDir string
}

// Option configures Pack.
type Option func(*options)

// WithModTime sets the time of every entry and of the image config
// (default: the Unix epoch).
func WithModTime(t time.Time) Option { return func(o *options) { o.modTime = t.UTC() } }

// WithArch sets the image's architecture as Go names it (default: this
// machine's, which is what debootstrap makes without --arch).
func WithArch(goArch string) Option { return func(o *options) { o.arch = goArch } }

// WithEnv sets the image's environment (default: DefaultPath).
func WithEnv(env []string) Option { return func(o *options) { o.env = env } }

// WithTempDir names where the packed layer is kept until the image is
// written (default: os.TempDir()).
func WithTempDir(dir string) Option { return func(o *options) { o.tempDir = dir } }

// Counts says what went into the layer and what was left out.
type Counts struct {
	Dirs, Files, Symlinks, HardLinks int
	// Skipped are device nodes, FIFOs and sockets, by path.
	Skipped []string
}

// Packed is a packed folder: the image and the file holding its layer,
// which Close removes once the image is written.
type Packed struct {
	Image  v1.Image
	Counts Counts
	// Size is the compressed layer's size in bytes.
	Size int64
	file string
}

// Close removes the packed layer's file.
func (p *Packed) Close() error { return os.Remove(p.file) }

// Pack packs the folder dir into a one-layer image. Links are stored as
// links, never followed; the folder is read through os.Root, so nothing
// outside it is read even if it changes during the pack.
func Pack(ctx context.Context, dir string, opts ...Option) (*Packed, error) {
	o := options{modTime: time.Unix(0, 0).UTC(), arch: runtime.GOARCH, env: []string{DefaultPath}}
	for _, opt := range opts {
		opt(&o)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", dir, err)
	}
	defer root.Close()
	tmp, err := os.CreateTemp(o.tempDir, "rootfs-layer-*.tar.gz")
	if err != nil {
		return nil, err
	}
	packed := &Packed{file: tmp.Name()}
	fail := func(err error) (*Packed, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	zw, err := gzip.NewWriterLevel(tmp, gzip.BestSpeed)
	if err != nil {
		return fail(err)
	}
	tw := tar.NewWriter(zw)
	if err := writeTree(ctx, root, tw, o.modTime, &packed.Counts); err != nil {
		return fail(fmt.Errorf("rootfs %s: %w", dir, err))
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		return fail(err)
	}
	if packed.Size, err = tmp.Seek(0, io.SeekCurrent); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	layer, err := tarball.LayerFromFile(packed.file, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fail(err)
	}
	if packed.Image, err = image(layer, o); err != nil {
		return fail(err)
	}
	return packed, nil
}

func image(layer v1.Layer, o options) (v1.Image, error) {
	created := v1.Time{Time: o.modTime}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created: created, CreatedBy: "comfy-image base --rootfs", Comment: "a root filesystem folder, packed"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", o.arch, created
	cf.Config.Env = o.env
	return mutate.ConfigFile(img, cf)
}

// fileID names a file by device and inode, to find its hard links.
type fileID struct{ dev, ino uint64 }

// writeTree writes every entry of root in lexical order (fs.WalkDir's), so
// the tar does not depend on the order the file system lists them in.
func writeTree(ctx context.Context, root *os.Root, tw *tar.Writer, modTime time.Time, c *Counts) error {
	seen := map[fileID]string{}
	return fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		fi, err := root.Lstat(name)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner information on this system", name)
		}
		hdr := &tar.Header{Name: name, Mode: tarMode(fi.Mode()), Uid: int(st.Uid), Gid: int(st.Gid), ModTime: modTime}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			c.Dirs++
		case mode&fs.ModeSymlink != 0:
			target, err := root.Readlink(name)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
			c.Symlinks++
		case mode.IsRegular():
			id := fileID{uint64(st.Dev), st.Ino}
			if first, ok := seen[id]; ok && st.Nlink > 1 {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				c.HardLinks++
				break
			}
			seen[id] = name
			c.Files++
			return writeFile(root, tw, hdr, name)
		default: // devices, FIFOs, sockets: the runtime makes /dev
			c.Skipped = append(c.Skipped, "/"+name)
			return nil
		}
		return tw.WriteHeader(hdr)
	})
}

// writeFile copies a regular file, refusing it if it changed kind or size
// since it was listed.
func writeFile(root *os.Root, tw *tar.Writer, hdr *tar.Header, name string) error {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: changed while packing (no longer a regular file)", name)
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%s: changed while packing (%d bytes read, %d expected)", name, n, hdr.Size)
	}
	return nil
}

// tarMode is the permission bits with setuid, setgid and sticky in tar's
// numbering.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
