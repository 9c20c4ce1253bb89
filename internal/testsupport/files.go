package testsupport

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// FlipByte changes one byte of file in place: same size, other content,
// as bit rot or a careless edit would; its times move a second later so
// the change shows on filesystems with coarse times.
func FlipByte(t testing.TB, file string, at int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xFF
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	os.Chtimes(file, later, later)
}

// Mirrors names the bare git mirrors (NAME.git folders) below dir, sorted:
// what a git cache (gitcache.Folder) holds.
func Mirrors(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() && strings.HasSuffix(p, ".git") {
			out = append(out, strings.TrimSuffix(d.Name(), ".git"))
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// ForgeModelLayerDigests rewrites every model layer digest the cache at
// cache remembers (layers/model-layers/*.json) to one its bytes do not
// have, keeping every other field (the files' stamps): a damaged or
// hostile cache. It returns the files rewritten; none is a test failure.
func ForgeModelLayerDigests(t testing.TB, cache string) []string {
	t.Helper()
	metas, _ := filepath.Glob(filepath.Join(cache, "layers", "model-layers", "*.json"))
	if len(metas) == 0 {
		t.Fatal("no model layer digest remembered in " + cache)
	}
	for _, m := range metas {
		data, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			Digest string `json:"digest"`
		}
		if err := json.Unmarshal(data, &meta); err != nil || meta.Digest == "" {
			t.Fatalf("model layer meta %s: %s", m, data)
		}
		wrong := sha256.Sum256([]byte(m))
		forged := strings.ReplaceAll(string(data), meta.Digest, "sha256:"+hex.EncodeToString(wrong[:]))
		if err := os.WriteFile(m, []byte(forged), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return metas
}
