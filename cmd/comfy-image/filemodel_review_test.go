package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// editKeepingStamp rewrites a byte of file in place and puts its mtime
// back: the size and mtime a quick look would compare are unchanged.
func editKeepingStamp(t *testing.T, file string) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	editInPlace(t, file)
	if err := os.Chtimes(file, time.Now(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// A file:// model edited since the lock pinned it is refused by realize
// as by build (README, the lock rule): a target realized before, and a
// new target served from the model store's copy, must not silently keep
// the old bytes while the spec's file holds other ones. The error names
// the file and the command that takes the new bytes.
func TestRealizeRefusesAnEditedFileModel(t *testing.T) {
	s := newSite(t)
	file := filepath.Join(s.dir, "mine.safetensors")
	first := randomBytes(t, 70_000)
	if err := os.WriteFile(file, first, 0o644); err != nil {
		t.Fatal(err)
	}
	s.writeSpec(t, ``, fmt.Sprintf(`"models": [{"source": %q, "name": "mine", "target_subdir": "loras"}],`, "file://"+file))
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if got := readFile(t, target, "models/loras/mine.safetensors"); got != string(first) {
		t.Fatal("the first realize did not place the file's bytes")
	}
	editKeepingStamp(t, file)
	for _, dir := range []string{target, filepath.Join(s.dir, "fresh")} {
		res := s.realize(t, dir)
		assertNoPanic(t, res)
		if res.Code == 0 || !strings.Contains(res.Stderr, file) || !strings.Contains(res.Stderr, "comfy-image lock --update mine`") {
			t.Fatalf("realize %s after the model file was edited: exit %d; want it refused naming %s and `comfy-image lock --update mine`\n%s", dir, res.Code, file, res.Stderr)
		}
	}
}
