package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// The cache half of the fault suite (issue 8): a damaged model store file,
// lock and git pack are each detected, repaired or named, never used
// silently, and never a Go panic.

// storeFile is the cache's store file of content.
func storeFile(cache string, content []byte) string {
	sum := sha256.Sum256(content)
	return filepath.Join(cache, "models", "sha256", hex.EncodeToString(sum[:]))
}

// editInPlace changes a byte of file without replacing it: what a user's
// tool does to target/models/x, a hard link into the store.
func editInPlace(t *testing.T, file string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{'X'}, 4096); err != nil {
		t.Fatal(err)
	}
}

func assertNoPanic(t *testing.T, res testsupport.Result) {
	t.Helper()
	for _, bad := range []string{"panic:", "goroutine ", "map[", "<nil>"} {
		if strings.Contains(res.Stderr, bad) {
			t.Fatalf("stderr holds %q:\n%s", bad, res.Stderr)
		}
	}
}

func TestEditedModelIsNotPlacedInANewTarget(t *testing.T) {
	s := newSite(t)
	old := filepath.Join(s.dir, "old")
	if res := s.realize(t, old); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	vae := s.models["vae/wan_vae.safetensors"]
	// The user edits the model of the old target in place: a hard link
	// into the store, so the store's file changes too.
	editInPlace(t, filepath.Join(old, "models", "vae", "wan_vae.safetensors"))

	// Offline, the damaged store file is named, and nothing is placed.
	offline := filepath.Join(s.dir, "offline")
	res := s.realize(t, offline, "--offline")
	assertNoPanic(t, res)
	if res.Code == 0 || !strings.Contains(res.Stderr, storeFile(s.cache, vae)) || !strings.Contains(res.Stderr, "damaged") {
		t.Fatalf("offline realize over a damaged store: exit %d, want an error naming %s\n%s", res.Code, storeFile(s.cache, vae), res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(offline, "models", "vae", "wan_vae.safetensors")); err == nil {
		t.Fatal("the damaged model was placed offline")
	}
	// Online, it is downloaded again and the new target gets the pinned bytes.
	fresh := filepath.Join(s.dir, "fresh")
	res = s.realize(t, fresh)
	if res.Code != 0 {
		t.Fatalf("realize: %s", res.Stderr)
	}
	if got := readFile(t, fresh, "models/vae/wan_vae.safetensors"); got != string(vae) {
		t.Fatal("a new target got a damaged model from the cache")
	}
	// The old target keeps the user's edit: it is theirs, and a rerun
	// refuses to overwrite it without --force.
	res = s.realize(t, old)
	if res.Code == 0 || !strings.Contains(res.Stderr, "wan_vae.safetensors") || !strings.Contains(res.Stderr, "--force") {
		t.Fatalf("rerun over the user's edit: exit %d\n%s", res.Code, res.Stderr)
	}
	if res := s.realize(t, old, "--force"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if got := readFile(t, old, "models/vae/wan_vae.safetensors"); got != string(vae) {
		t.Fatal("--force did not restore the pinned model")
	}
}

func TestDamagedModelIsNotPackedIntoALayer(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := filepath.Join(v.Dir, "cache")
	build := func(out string) testsupport.Result {
		return testsupport.Run(t, v.Dir, v.Env(cache), "build", "--spec", v.SpecFile, "--base", base,
			"--wheels-dir", v.Wheels, "--models", "bake", "--output", "oci:"+out)
	}
	if res := build(filepath.Join(v.Dir, "first")); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	blob := storeFile(cache, v.Models["vae/wan_vae.safetensors"])
	editInPlace(t, blob)
	out := filepath.Join(v.Dir, "second")
	if res := build(out); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	// Every blob of the layout is what its name says (a registry would
	// reject anything else with DIGEST_INVALID).
	blobs, _ := filepath.Glob(filepath.Join(out, "blobs", "sha256", "*"))
	if len(blobs) == 0 {
		t.Fatal("no blobs written")
	}
	for _, b := range blobs {
		data, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != filepath.Base(b) {
			t.Errorf("layout blob %s does not match its digest: a damaged model was packed", filepath.Base(b)[:12])
		}
	}
}

func TestDamagedLockInCache(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	lock := filepath.Join(s.cache, "resolved", "demo.lock.json")
	good, err := os.ReadFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"garbage":   []byte("\x00\x01garbage\xff"),
		"empty":     nil,
		"wrong":     []byte(`{"lock_version": 2, "comfy": {"commit": 7}}`),
		"hollow":    []byte(`{"lock_version": 2}`),
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(lock, bad, 0o644)
			res := s.realize(t, target, "--skip-models", "--locked")
			assertNoPanic(t, res)
			if res.Code == 0 || !strings.Contains(res.Stderr, lock) || !strings.Contains(res.Stderr, "comfy-image lock") {
				t.Fatalf("--locked over a damaged lock: exit %d; want an error naming %s and what to run\n%s", res.Code, lock, res.Stderr)
			}
			res = s.realize(t, target, "--skip-models")
			assertNoPanic(t, res)
			if res.Code != 0 {
				t.Fatalf("without --locked a damaged lock is resolved again: exit %d\n%s", res.Code, res.Stderr)
			}
			if !strings.Contains(res.Stderr, lock) {
				t.Errorf("the re-resolve does not say which lock was damaged:\n%s", res.Stderr)
			}
		})
	}
}

// flipPackBytes damages every pack of the mirrors under cache/git.
func flipPackBytes(t *testing.T, cache string) int {
	t.Helper()
	n := 0
	filepath.Walk(filepath.Join(cache, "git"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || !strings.HasSuffix(p, ".pack") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := 12; i < len(data)-20; i += 7 { // keep the header, damage the objects
			data[i] ^= 0xff
		}
		os.Chmod(p, 0o644)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		n++
		return nil
	})
	return n
}

func TestDamagedGitPackInMirror(t *testing.T) {
	s := newSite(t)
	if res := s.realize(t, filepath.Join(s.dir, "first"), "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if flipPackBytes(t, s.cache) == 0 {
		t.Fatal("no pack in the mirrors")
	}
	// Offline: a clear error naming the mirror, no panic.
	res := s.realize(t, filepath.Join(s.dir, "offline"), "--skip-models", "--offline")
	assertNoPanic(t, res)
	if res.Code == 0 || !strings.Contains(res.Stderr, filepath.Join(s.cache, "git")) {
		t.Fatalf("offline over a damaged mirror: exit %d; want an error naming the mirror\n%s", res.Code, res.Stderr)
	}
	// Online: the mirror is cloned again and the new target is whole.
	fresh := filepath.Join(s.dir, "fresh")
	res = s.realize(t, fresh, "--skip-models")
	assertNoPanic(t, res)
	if res.Code != 0 {
		t.Fatalf("online realize over a damaged mirror: exit %d\n%s", res.Code, res.Stderr)
	}
	want := snapshot(t, filepath.Join(s.dir, "first", "ComfyUI"))
	got := snapshot(t, filepath.Join(fresh, "ComfyUI"))
	for p, v := range want {
		if got[p] != v {
			t.Errorf("ComfyUI/%s differs from the first realize", p)
		}
	}
}
