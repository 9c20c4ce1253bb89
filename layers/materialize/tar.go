package materialize

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Entry is one file, directory or symlink of a layer.
type Entry struct {
	// Path is relative to the image root, without a leading slash.
	Path string
	// Mode holds the permission bits (0644, 0755); the type comes from
	// Link and Dir.
	Mode int64
	Dir  bool
	// Link, when set, makes the entry a symlink to it.
	Link string
	// Size and Open give a regular file's content.
	Size int64
	Open func() (io.ReadCloser, error)
}

// TarOptions fix what would otherwise vary between machines.
type TarOptions struct {
	// ModTime of every entry (SOURCE_DATE_EPOCH, or the Unix epoch).
	ModTime time.Time
}

// WriteTar writes entries as a deterministic tar: sorted by path, missing
// parent directories added (0755), uid/gid 0, no user names, no xattrs,
// one fixed mtime, mode bits kept. Entries with the same path: the last wins.
// A path that is empty, absolute or climbs out with ".." is an error, never
// cleaned into another place.
func WriteTar(w io.Writer, entries []Entry, opts TarOptions) error {
	byPath := map[string]Entry{}
	for _, e := range entries {
		if !filepath.IsLocal(e.Path) || strings.ContainsRune(e.Path, 0) {
			return fmt.Errorf("layer entry %q: not a path inside the image root", e.Path)
		}
		e.Path = path.Clean(e.Path)
		byPath[e.Path] = e
		for dir := path.Dir(e.Path); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = Entry{Path: dir, Dir: true, Mode: 0o755}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		if err := writeEntry(tw, byPath[p], opts); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return tw.Close()
}

func writeEntry(tw *tar.Writer, e Entry, opts TarOptions) error {
	hdr := &tar.Header{
		Name:    e.Path,
		Mode:    e.Mode & 0o7777,
		ModTime: opts.ModTime,
		Format:  tar.FormatPAX,
	}
	switch {
	case e.Dir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, e.Path+"/"
	case e.Link != "":
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.Link, 0o777
	default:
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.Size
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg || e.Size == 0 {
		return nil
	}
	rc, err := e.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	n, err := io.Copy(tw, rc)
	if err != nil {
		return err
	}
	if n != e.Size {
		return fmt.Errorf("content is %d bytes, expected %d", n, e.Size)
	}
	return nil
}

// BytesEntry is a regular file with in-memory content.
func BytesEntry(p string, mode int64, data []byte) Entry {
	return Entry{Path: p, Mode: mode, Size: int64(len(data)), Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(string(data))), nil
	}}
}
