package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// hostSecret is a file outside the tree that a link in it points to.
func hostSecret(t *testing.T) string {
	outside := filepath.Join(testsupport.TempDir(t), "host-secret")
	must(t, os.WriteFile(outside, []byte("HOST SECRET"), 0o644))
	return outside
}

// makeTree writes a small root filesystem: files with their modes, a
// setuid program, a sticky folder, relative and absolute symlinks (one
// pointing out of the folder), a hard link, a FIFO, and when run as root a
// device node and files of other owners.
func makeTree(t *testing.T, dir, outside string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "usr/lib", "tmp", "dev"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string, mode os.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask, setuid included
			t.Fatal(err)
		}
	}
	write("bin/tool", "#!/bin/sh\necho tool\n", 0o755)
	write("etc/conf", "key=value\n", 0o644)
	write("etc/shadow", "root:*:\n", 0o600)
	write("bin/su", "setuid program\n", 0o755)
	must(t, os.Chmod(filepath.Join(dir, "bin/su"), 0o755|os.ModeSetuid))
	must(t, os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	must(t, os.Link(filepath.Join(dir, "bin/tool"), filepath.Join(dir, "usr/lib/tool-hardlink")))
	must(t, os.Symlink("tool", filepath.Join(dir, "bin/sh")))
	must(t, os.Symlink("usr/lib", filepath.Join(dir, "lib")))
	must(t, os.Symlink(outside, filepath.Join(dir, "etc/escape")))
	must(t, syscall.Mkfifo(filepath.Join(dir, "dev/initctl"), 0o600))
	if os.Geteuid() == 0 {
		must(t, syscall.Mknod(filepath.Join(dir, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3))
		must(t, os.Lchown(filepath.Join(dir, "etc/conf"), 1234, 5678))
		must(t, os.Lchown(filepath.Join(dir, "bin/sh"), 42, 43))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type entry struct {
	hdr     *tar.Header
	content string
}

func readLayer(t *testing.T, p *Packed) ([]string, map[string]entry) {
	t.Helper()
	ls, err := p.Image.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("layers: %d, %v", len(ls), err)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	entries := map[string]entry{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		names = append(names, hdr.Name)
		entries[hdr.Name] = entry{hdr, string(data)}
	}
	return names, entries
}

func TestPackKeepsFilesLinksModesAndOwners(t *testing.T) {
	dir := testsupport.TempDir(t)
	makeTree(t, dir, hostSecret(t))
	when := time.Unix(1700000000, 0).UTC()
	p, err := Pack(context.Background(), dir, WithModTime(when), WithArch("arm64"), WithTempDir(testsupport.TempDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	names, entries := readLayer(t, p)
	want := []string{"bin/", "bin/sh", "bin/su", "bin/tool", "dev/", "etc/", "etc/conf", "etc/escape", "etc/shadow",
		"lib", "tmp/", "usr/", "usr/lib/", "usr/lib/tool-hardlink"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("entries (in order):\n got %v\nwant %v", names, want)
	}
	check := func(name string, typ byte, mode int64, link, content string) {
		t.Helper()
		e := entries[name]
		if e.hdr.Typeflag != typ || e.hdr.Mode != mode || e.hdr.Linkname != link || e.content != content {
			t.Errorf("%s: type %c mode %o link %q content %q; want type %c mode %o link %q content %q",
				name, e.hdr.Typeflag, e.hdr.Mode, e.hdr.Linkname, e.content, typ, mode, link, content)
		}
		if !e.hdr.ModTime.Equal(when) || e.hdr.Uname != "" || e.hdr.Gname != "" {
			t.Errorf("%s: mtime %v, owner names %q %q; want %v and no names", name, e.hdr.ModTime, e.hdr.Uname, e.hdr.Gname, when)
		}
	}
	check("bin/tool", tar.TypeReg, 0o755, "", "#!/bin/sh\necho tool\n")
	check("usr/lib/tool-hardlink", tar.TypeLink, 0o755, "bin/tool", "")
	check("bin/su", tar.TypeReg, 0o4755, "", "setuid program\n")
	check("etc/shadow", tar.TypeReg, 0o600, "", "root:*:\n")
	check("tmp/", tar.TypeDir, 0o1777, "", "")
	check("bin/sh", tar.TypeSymlink, 0o777, "tool", "")
	check("lib", tar.TypeSymlink, 0o777, "usr/lib", "")
	// A link out of the folder is a link in the image, its target unread.
	if e := entries["etc/escape"]; e.hdr.Typeflag != tar.TypeSymlink || !strings.HasSuffix(e.hdr.Linkname, "/host-secret") || e.content != "" {
		t.Errorf("etc/escape: %+v %q", e.hdr, e.content)
	}
	wantSkipped := "/dev/initctl"
	if os.Geteuid() == 0 {
		wantSkipped = "/dev/initctl /dev/null"
		if h := entries["etc/conf"].hdr; h.Uid != 1234 || h.Gid != 5678 {
			t.Errorf("etc/conf owner %d:%d, want 1234:5678", h.Uid, h.Gid)
		}
		if h := entries["bin/sh"].hdr; h.Uid != 42 || h.Gid != 43 {
			t.Errorf("bin/sh owner %d:%d, want 42:43", h.Uid, h.Gid)
		}
	}
	if got := strings.Join(p.Counts.Skipped, " "); got != wantSkipped {
		t.Errorf("skipped %q, want %q", got, wantSkipped)
	}
	if c := p.Counts; c.Files != 4 || c.HardLinks != 1 || c.Symlinks != 3 || c.Dirs != 6 {
		t.Errorf("counts %+v", c)
	}

	cf, err := p.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || !cf.Created.Equal(when) ||
		strings.Join(cf.Config.Env, " ") != DefaultPath || len(cf.History) != 1 || !cf.History[0].Created.Equal(when) {
		t.Errorf("config: os %s arch %s created %v env %v history %+v", cf.OS, cf.Architecture, cf.Created, cf.Config.Env, cf.History)
	}
	if mt, _ := p.Image.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	m, _ := p.Image.Manifest()
	if m.Config.MediaType != types.OCIConfigJSON || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("media types: config %s layer %s", m.Config.MediaType, m.Layers[0].MediaType)
	}
}

// The digest depends on the folder's content only: not on the files'
// times, nor on the order they were made in.
func TestPackIsDeterministic(t *testing.T) {
	digest := func(dir string) string {
		t.Helper()
		p, err := Pack(context.Background(), dir, WithTempDir(testsupport.TempDir(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		d, err := p.Image.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	a, b, outside := testsupport.TempDir(t), testsupport.TempDir(t), hostSecret(t)
	makeTree(t, a, outside)
	first := digest(a)
	// The same tree made again, files in the reverse order, other times.
	for _, name := range []string{"z", "m", "a"} {
		must(t, os.WriteFile(filepath.Join(b, name), []byte(name), 0o644))
	}
	for _, name := range []string{"a", "m", "z"} {
		must(t, os.WriteFile(filepath.Join(a, name), []byte(name), 0o644))
	}
	makeTree(t, b, outside)
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	must(t, os.Chtimes(filepath.Join(b, "bin/tool"), old, old))
	second, other := digest(a), digest(b)
	if first == second {
		t.Fatalf("adding files did not change the digest %s", first)
	}
	if second != other {
		t.Errorf("the same tree made twice: %s and %s", second, other)
	}
	if again := digest(a); again != second {
		t.Errorf("packing again: %s, then %s", second, again)
	}
}

func TestPackRefusesAMissingFolder(t *testing.T) {
	_, err := Pack(context.Background(), filepath.Join(testsupport.TempDir(t), "missing"))
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("err = %v, want one naming the folder", err)
	}
}

func TestPackLeavesNoTempFileOnCancel(t *testing.T) {
	dir, tmp := testsupport.TempDir(t), testsupport.TempDir(t)
	makeTree(t, dir, hostSecret(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Pack(ctx, dir, WithTempDir(tmp)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}
