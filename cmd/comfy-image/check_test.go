package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// TestCheckModelsDirMustBeAFolder: a --models-dir that is not a folder is
// bad input (exit 2, named), not a run in which every model is missing.
func TestCheckModelsDirMustBeAFolder(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{"no-such-folder", file} {
		r := testsupport.Run(t, dir, nil, "check", "localhost/some-image", "--models-dir", arg)
		if r.Code != 2 || !strings.Contains(r.Stderr, "--models-dir "+arg+": expected a folder") {
			t.Errorf("check --models-dir %s: exit %d\n%s", arg, r.Code, r.Stderr)
		}
	}
}
