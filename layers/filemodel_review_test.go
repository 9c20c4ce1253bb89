package layers_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every way a user (or another process) changes a file:// model after a
// push — in place with its mtime put back, replaced by a rename, a
// symlink swapped to another file, truncated, deleted — makes the next
// push refuse it naming the file, never keep the registry's old layer;
// and the pinned bytes put back (a new inode, a new stamp) are taken
// again, not refused.
func TestEveryEditOfAFileModelIsSeenByAPush(t *testing.T) {
	v, file, content, base, cache, push := pushedLocalModel(t)
	edited := slices.Clone(content)
	edited[1000] ^= 0xff
	dir := filepath.Dir(file)
	write := func(p string, b []byte) {
		t.Helper()
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	restore := func() {
		t.Helper()
		os.Remove(file)
		write(file, content)
		if _, err := buildErr(t, v, base, cache, push); err != nil {
			t.Fatalf("the pinned bytes put back were refused: %v", err)
		}
	}
	edits := []struct {
		name string
		do   func()
	}{
		{"in place, mtime put back", func() {
			fi, _ := os.Stat(file)
			f, err := os.OpenFile(file, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{edited[1000]}, 1000)
			f.Close()
			os.Chtimes(file, fi.ModTime(), fi.ModTime())
		}},
		{"replaced by a rename", func() {
			fi, _ := os.Stat(file)
			tmp := filepath.Join(dir, ".tmp")
			write(tmp, edited)
			os.Chtimes(tmp, fi.ModTime(), fi.ModTime())
			if err := os.Rename(tmp, file); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink swapped", func() {
			good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
			write(good, content)
			write(bad, edited)
			os.Remove(file)
			if err := os.Symlink(good, file); err != nil {
				t.Fatal(err)
			}
			if _, err := buildErr(t, v, base, cache, push); err != nil {
				t.Fatalf("a link to the pinned bytes was refused: %v", err)
			}
			tmp := filepath.Join(dir, ".link")
			os.Symlink(bad, tmp)
			if err := os.Rename(tmp, file); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func() {
			if err := os.Truncate(file, 100); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted", func() { os.Remove(file) }},
	}
	for _, e := range edits {
		e.do()
		_, err := buildErr(t, v, base, cache, push)
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: push after the edit: %v; want it refused naming %s", e.name, err, file)
		}
		restore()
	}
}
