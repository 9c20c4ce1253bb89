package models_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/models"
)

// The model half of the fault suite (issue 8): a damaged store file, a
// server that truncates, lies about its length or changes bytes between
// runs, and a full disk are each detected and never used silently.

// storedModel fetches a fresh model into a new store and returns the
// fetcher, the content and its sha256.
func storedModel(t *testing.T, hf *testsupport.HFServer, source string, size int) (*models.Fetcher, []byte, string) {
	t.Helper()
	content := randomBytes(t, size)
	sha := hf.Add(strings.TrimPrefix(source, "hf://"), content)
	f := newFetcher(t, hf)
	if _, err := f.Fetch(context.Background(), models.Request{Source: source}); err != nil {
		t.Fatal(err)
	}
	return f, content, sha
}

func cdnGets(hf *testsupport.HFServer) int {
	n := 0
	for _, r := range hf.Requests() {
		if r.Host == "cdn" && r.Method == http.MethodGet {
			n++
		}
	}
	return n
}

// damages are what happens to a store file in real life: a user edits a
// target's model in place (a hard link into the store), a copy is cut
// short, a file is replaced by another of the same size and mtime.
var damages = map[string]func(t *testing.T, blob string){
	"edited in place": func(t *testing.T, blob string) {
		f, err := os.OpenFile(blob, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("EDITED"), 1000); err != nil {
			t.Fatal(err)
		}
		f.Close()
	},
	"truncated": func(t *testing.T, blob string) {
		fi, _ := os.Stat(blob)
		if err := os.Truncate(blob, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
	},
	"replaced, same size and mtime": func(t *testing.T, blob string) {
		fi, _ := os.Stat(blob)
		other := blob + ".other"
		if err := os.WriteFile(other, bytes.Repeat([]byte{'z'}, int(fi.Size())), 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(other, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(other, blob); err != nil {
			t.Fatal(err)
		}
	},
}

func TestDamagedStoreFileIsFetchedAgain(t *testing.T) {
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			hf := testsupport.NewHFServer(t)
			f, content, sha := storedModel(t, hf, "hf://o/r/m.safetensors", 100_000)
			old := filepath.Join(testsupport.TempDir(t), "old-target", "m.safetensors")
			if _, err := f.Store.Place(sha, old, false); err != nil {
				t.Fatal(err)
			}
			damage(t, f.Store.BlobPath(sha))
			before := cdnGets(hf)
			res, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.safetensors", SHA256: sha})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Downloaded || cdnGets(hf) != before+1 {
				t.Fatalf("the damaged store file was used: downloaded %v, CDN GETs %d -> %d", res.Downloaded, before, cdnGets(hf))
			}
			dest := filepath.Join(testsupport.TempDir(t), "new-target", "m.safetensors")
			if _, err := f.Store.Place(sha, dest, false); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dest); !bytes.Equal(got, content) {
				t.Fatal("a new target got bytes that are not the pinned file")
			}
		})
	}
}

func TestDamagedStoreFileOfflineIsNamed(t *testing.T) {
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			hf := testsupport.NewHFServer(t)
			f, _, sha := storedModel(t, hf, "hf://o/r/m.safetensors", 100_000)
			blob := f.Store.BlobPath(sha)
			damage(t, blob)
			f.Offline = true
			_, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.safetensors", SHA256: sha})
			if err == nil || !strings.Contains(err.Error(), blob) || !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("offline fetch of a damaged store file: %v; want an error naming %s", err, blob)
			}
			// Placing it (what a realize does next) is refused too.
			dest := filepath.Join(testsupport.TempDir(t), "m.safetensors")
			if _, err := f.Store.Place(sha, dest, false); err == nil {
				t.Fatal("a damaged store file was placed")
			}
			if _, err := os.Stat(dest); err == nil {
				t.Fatal("a damaged store file was placed")
			}
		})
	}
}

// A touch (same bytes, new mtime) costs one hash, never a download.
func TestTouchedStoreFileIsHashedNotFetched(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	f, _, sha := storedModel(t, hf, "hf://o/r/m.safetensors", 100_000)
	now := time.Now()
	os.Chtimes(f.Store.BlobPath(sha), now, now)
	before := cdnGets(hf)
	res, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.safetensors", SHA256: sha})
	if err != nil || res.Downloaded || cdnGets(hf) != before {
		t.Fatalf("touched store file: %+v %v, CDN GETs %d -> %d", res, err, before, cdnGets(hf))
	}
	if p, err := f.Store.Verified(sha); err != nil || p != f.Store.BlobPath(sha) {
		t.Fatalf("Verified: %q %v", p, err)
	}
}

func TestServerTruncatingBodyIsRetriedThenNamed(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	sha := hf.Add("o/r/m.bin", randomBytes(t, 200_000))
	hf.SetFault(testsupport.FaultTruncate)
	f := newFetcher(t, hf)
	f.Attempts = 3
	_, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"})
	assertNamed(t, err, "hf://o/r/m.bin", hf.URL+"/o/r/resolve/main/m.bin", "connection lost")
	if cdnGets(hf) != 3 {
		t.Fatalf("CDN GETs %d, want 3 attempts", cdnGets(hf))
	}
	if _, ok := f.Store.Has(sha); ok {
		t.Fatal("a truncated body was stored")
	}
	// What arrived is kept for a later resume, not stored: a healthy
	// server then completes it from where it stopped.
	hf.SetFault(testsupport.FaultNone)
	if res, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"}); err != nil || res.SHA256 != sha {
		t.Fatalf("after the server healed: %+v %v", res, err)
	}
	if last := hf.Requests()[len(hf.Requests())-1]; last.Range == "" {
		t.Fatalf("the next run started over: %+v", last)
	}
}

func TestServerLyingAboutContentLength(t *testing.T) {
	// A Content-Length longer than the body: the connection ends early; the
	// bytes that did come are the whole file and its sha256 (the hub's
	// X-Linked-Etag) proves it, so they are stored without a new request.
	hf := testsupport.NewHFServer(t)
	content := randomBytes(t, 200_000)
	sha := hf.Add("o/r/m.bin", content)
	hf.SetFault(testsupport.FaultLongLength)
	f := newFetcher(t, hf)
	f.Attempts = 2
	if _, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f.Store.BlobPath(sha)); !bytes.Equal(got, content) {
		t.Fatal("stored bytes differ")
	}
	// A Content-Length shorter than the body looks like a whole file: the
	// hub's size and sha256 catch it.
	for _, pinned := range []bool{false, true} {
		hf := testsupport.NewHFServer(t)
		sha := hf.Add("o/r/m.bin", randomBytes(t, 200_000))
		hf.SetFault(testsupport.FaultShortLength)
		f := newFetcher(t, hf)
		f.Attempts = 2
		req := models.Request{Source: "hf://o/r/m.bin"}
		if pinned {
			req.SHA256 = sha
		}
		_, err := f.Fetch(context.Background(), req)
		assertNamed(t, err, "hf://o/r/m.bin", hf.URL+"/o/r/resolve/main/m.bin", "size mismatch")
		assertNotStored(t, f, sha)
	}
	// A plain server (no hub size) whose short Content-Length looks like a
	// whole file: the pinned sha256 catches it.
	hf = testsupport.NewHFServer(t)
	sha = hf.Add("o/r/m.bin", randomBytes(t, 200_000))
	hf.SetFault(testsupport.FaultShortLength)
	f = newFetcher(t, hf)
	_, err := f.Fetch(context.Background(), models.Request{Source: hf.BlobURL(sha), SHA256: sha})
	assertNamed(t, err, hf.BlobURL(sha), "sha256 mismatch")
	assertNotStored(t, f, sha)
}

// The lock pins the sha256 of the first run; the repository's file changes
// (a force-pushed revision, a compromised mirror): a fresh cache refuses it.
func TestServerBytesChangedSinceLockedAreRefused(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	_, _, sha := storedModel(t, hf, "hf://o/r/m.bin", 50_000)
	first, _ := newFetcher(t, hf).Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"})
	newSHA := hf.Add("o/r/m.bin", randomBytes(t, 50_000))
	f := newFetcher(t, hf) // another machine, same lock
	_, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin", SHA256: sha, URL: first.URL})
	assertNamed(t, err, "hf://o/r/m.bin", first.URL, "sha256 mismatch", sha)
	assertNotStored(t, f, sha)
	assertNotStored(t, f, newSHA)
}

func TestFullDiskFailsAtOnceNamingThePath(t *testing.T) {
	cache := testsupport.TempDir(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", cache).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a 1 MiB tmpfs to fill (needs root and mount permission): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", cache).Run() })
	hf := testsupport.NewHFServer(t)
	sha := hf.Add("o/r/big.bin", randomBytes(t, 3<<20))
	f := newFetcher(t, hf)
	f.Store.Dir = filepath.Join(cache, "models")
	f.Backoff = time.Second // a retry would show as a second GET
	_, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/big.bin"})
	assertNamed(t, err, "no space left", f.Store.Dir)
	if n := cdnGets(hf); n != 1 {
		t.Fatalf("a full disk was retried as a network error: %d GETs", n)
	}
	assertNotStored(t, f, sha)
	var st syscall.Statfs_t
	if syscall.Statfs(cache, &st) == nil && st.Bfree*uint64(st.Bsize) < 512<<10 {
		t.Fatalf("the partial download was kept: %d bytes free of 1 MiB", st.Bfree*uint64(st.Bsize))
	}
}

func TestFileModelKeepsItsPrivacy(t *testing.T) {
	for _, c := range []struct{ src, want os.FileMode }{{0o600, 0o400}, {0o640, 0o440}, {0o666, 0o444}, {0o755, 0o444}} {
		f := newFetcher(t, testsupport.NewHFServer(t))
		local := filepath.Join(testsupport.TempDir(t), "private.safetensors")
		os.WriteFile(local, []byte("private weights "+c.src.String()), 0o600)
		os.Chmod(local, c.src)
		res, err := f.Fetch(context.Background(), models.Request{Source: "file://" + local})
		if err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(testsupport.TempDir(t), "m.safetensors")
		if _, err := f.Store.Place(res.SHA256, dest, false); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{f.Store.BlobPath(res.SHA256), dest} {
			if fi, _ := os.Stat(p); fi.Mode().Perm() != c.want {
				t.Errorf("source %v: %s has mode %v, want %v", c.src, p, fi.Mode().Perm(), c.want)
			}
		}
	}
}

func TestFileModelSizeIsPlanned(t *testing.T) {
	f := newFetcher(t, testsupport.NewHFServer(t))
	local := filepath.Join(testsupport.TempDir(t), "m.safetensors")
	os.WriteFile(local, make([]byte, 12345), 0o644)
	res, stored, err := f.Plan(context.Background(), models.Request{Source: "file://" + local})
	if err != nil || stored || res.Size != 12345 {
		t.Fatalf("plan of a file:// model: %+v stored %v %v; want size 12345", res, stored, err)
	}
}

func TestResumeWithLastModifiedInsteadOfETag(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	content := randomBytes(t, 300_000)
	hf.Add("o/r/big.bin", content)
	hf.NoETag(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	hf.CutNextAfter(100_000)
	f := newFetcher(t, hf)
	var log bytes.Buffer
	f.Log = &log
	res, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/big.bin"})
	if err != nil {
		t.Fatal(err)
	}
	assertResumed(t, hf, f, res, content, &log)
}

// With neither ETag nor Last-Modified a resume rests on the size, which is
// trusted only because the sha256 is known (the hub's X-Linked-Etag).
func TestResumeOnSizeWhenSHAKnown(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	content := randomBytes(t, 300_000)
	hf.Add("o/r/big.bin", content)
	hf.NoETag(time.Time{})
	hf.CutNextAfter(100_000)
	f := newFetcher(t, hf)
	var log bytes.Buffer
	f.Log = &log
	res, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/big.bin"})
	if err != nil {
		t.Fatal(err)
	}
	assertResumed(t, hf, f, res, content, &log)
}

// No validator and no sha256: a resumed file could not be checked, so the
// download starts over.
func TestNoResumeWithoutValidatorOrSHA(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	content := randomBytes(t, 300_000)
	sha := hf.Add("o/r/big.bin", content)
	hf.NoETag(time.Time{})
	hf.CutNextAfter(100_000)
	f := newFetcher(t, hf)
	res, err := f.Fetch(context.Background(), models.Request{Source: hf.BlobURL(sha)})
	if err != nil || res.SHA256 != sha {
		t.Fatalf("%+v %v", res, err)
	}
	for _, r := range hf.Requests() {
		if r.Range != "" {
			t.Fatalf("resumed with nothing to check the result against: %+v", r)
		}
	}
}

func assertResumed(t *testing.T, hf *testsupport.HFServer, f *models.Fetcher, res models.Result, content []byte, log *bytes.Buffer) {
	t.Helper()
	if got, _ := os.ReadFile(f.Store.BlobPath(res.SHA256)); !bytes.Equal(got, content) {
		t.Fatal("resumed content is wrong")
	}
	var ranges []string
	for _, r := range hf.Requests() {
		if r.Host == "cdn" && r.Method == http.MethodGet {
			ranges = append(ranges, r.Range+"/"+http.StatusText(r.Status))
		}
	}
	if len(ranges) != 2 || ranges[1] != "bytes=100000-/Partial Content" {
		t.Fatalf("CDN GETs %q, want a full GET then a 206 from 100000", ranges)
	}
	if !strings.Contains(log.String(), "resumed at 97.7 KiB") {
		t.Fatalf("log %q does not say where it resumed", log.String())
	}
}

func assertNamed(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one naming %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not name %q", err, p)
		}
	}
}

// assertNotStored checks nothing of sha was kept: no store file, no
// partial download.
func assertNotStored(t *testing.T, f *models.Fetcher, sha string) {
	t.Helper()
	if _, err := os.Stat(f.Store.BlobPath(sha)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the store holds %s after a failed download", sha[:12])
	}
	parts, _ := filepath.Glob(filepath.Join(f.Store.Dir, "tmp", "*.part"))
	if len(parts) > 0 {
		t.Fatalf("a failed download kept %v", parts)
	}
}
