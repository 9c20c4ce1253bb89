package gitcache_test

import (
	"context"
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/realize/gitcache"
)

// damagePacks flips bytes inside every pack of the mirror at dir.
func damagePacks(t *testing.T, dir string) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.pack"))
	if len(packs) == 0 {
		t.Fatalf("no pack in %s", dir)
	}
	for _, p := range packs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		os.Chmod(p, 0o644)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDamagedPackIsNamedOfflineAndClonedAgainOnline(t *testing.T) {
	fx := newFixture(t)
	root := testsupport.TempDir(t)
	want, err := gitcache.New(root).Resolve(context.Background(), fx.url, "dev", "")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := gitcache.New(root).MirrorPath(fx.url)
	damagePacks(t, dir)

	offline := gitcache.New(root)
	offline.Offline = true
	_, err = offline.Resolve(context.Background(), fx.url, "dev", "")
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "--offline") {
		t.Fatalf("offline over a damaged pack: %v; want an error naming %s", err, dir)
	}
	if _, err := offline.Open(fx.url); err == nil {
		t.Fatal("Open handed out a damaged mirror")
	}

	got, err := gitcache.New(root).Resolve(context.Background(), fx.url, "dev", "")
	if err != nil || got != want {
		t.Fatalf("online over a damaged pack: %+v %v, want %+v", got, err, want)
	}
	fsck(t, dir)
}
