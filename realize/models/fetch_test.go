package models_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/models"
)

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newFetcher(t *testing.T, hf *testsupport.HFServer) *models.Fetcher {
	return &models.Fetcher{
		Store:      models.Store{Dir: testsupport.TempDir(t)},
		HFEndpoint: hf.URL,
		Backoff:    10 * time.Millisecond,
		MaxBackoff: 1500 * time.Millisecond,
	}
}

func TestHFDownloadKeepsTokenOnHub(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	content := randomBytes(t, 200_000)
	sha := hf.Add("Comfy-Org/Wan/split/vae.safetensors", content)
	hf.RequireToken(testsupport.Secret())
	f := newFetcher(t, hf)
	f.HFToken = testsupport.Secret()
	res, err := f.Fetch(context.Background(), models.Request{Source: "hf://Comfy-Org/Wan/split/vae.safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != sha || res.Size != int64(len(content)) || res.Revision != hf.Commit {
		t.Fatalf("result %+v, want sha %s size %d revision %s", res, sha, len(content), hf.Commit)
	}
	if want := hf.URL + "/Comfy-Org/Wan/resolve/" + hf.Commit + "/split/vae.safetensors"; res.URL != want {
		t.Errorf("URL %s, want the commit-pinned %s", res.URL, want)
	}
	got, _ := os.ReadFile(f.Store.BlobPath(sha))
	if !bytes.Equal(got, content) {
		t.Fatal("stored content differs")
	}
	var hubAuth, cdn int
	for _, r := range hf.Requests() {
		switch r.Host {
		case "hub":
			if r.Authorization == "Bearer "+testsupport.Secret() {
				hubAuth++
			}
		case "cdn":
			cdn++
			if r.Authorization != "" {
				t.Fatalf("the token followed the redirect to the CDN: %+v", r)
			}
		}
	}
	if hubAuth == 0 || cdn == 0 {
		t.Fatalf("hub requests with token %d, cdn requests %d", hubAuth, cdn)
	}
	// A second fetch of the same source reads nothing from the network.
	before := len(hf.Requests())
	if _, err := f.Fetch(context.Background(), models.Request{Source: "hf://Comfy-Org/Wan/split/vae.safetensors"}); err != nil {
		t.Fatal(err)
	}
	if len(hf.Requests()) != before {
		t.Fatal("a stored model was downloaded again")
	}
}

func TestUnauthorizedNamesTheVariable(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	hf.Add("o/r/m.bin", []byte("x"))
	hf.RequireToken("right-token")
	f := newFetcher(t, hf)
	f.TokenVar = "MY_HF_TOKEN"
	_, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"})
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "MY_HF_TOKEN") {
		t.Fatalf("error %v, want a 401 naming MY_HF_TOKEN", err)
	}
	if n := len(hf.Requests()); n != 1 {
		t.Fatalf("a 401 was retried: %d requests", n)
	}
	f.HFToken = "wrong-token-value"
	_, err = f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"})
	if err == nil || strings.Contains(err.Error(), "wrong-token-value") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("refused token: %v", err)
	}
}

func TestRetries429And503HonouringRetryAfter(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	sha := hf.Add("o/r/m.bin", randomBytes(t, 50_000))
	hf.FailNext(http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	f := newFetcher(t, hf)
	start := time.Now()
	res, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != sha {
		t.Fatal("wrong content")
	}
	if time.Since(start) < time.Second {
		t.Fatalf("Retry-After: 1 was not honoured (%v)", time.Since(start))
	}
	statuses := []int{}
	for _, r := range hf.Requests() {
		if r.Host == "hub" {
			statuses = append(statuses, r.Status)
		}
	}
	if len(statuses) != 4 || statuses[3] != http.StatusFound {
		t.Fatalf("hub statuses %v, want 429 503 503 302", statuses)
	}
}

func TestGivesUpAfterAttempts(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	hf.Add("o/r/m.bin", []byte("x"))
	hf.FailNext(503, 503, 503, 503)
	f := newFetcher(t, hf)
	f.Attempts = 3
	_, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("error %v", err)
	}
}

func TestResumesAfterConnectionCut(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	content := randomBytes(t, 300_000)
	sha := hf.Add("o/r/big.bin", content)
	hf.CutNextAfter(100_000)
	f := newFetcher(t, hf)
	res, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/big.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != sha {
		t.Fatal("resumed content is wrong")
	}
	var ranges []string
	for _, r := range hf.Requests() {
		if r.Host == "cdn" && r.Method == http.MethodGet {
			ranges = append(ranges, r.Range)
		}
	}
	if len(ranges) != 2 || ranges[0] != "" || ranges[1] != "bytes=100000-" {
		t.Fatalf("CDN GET ranges %q, want a full GET then bytes=100000-", ranges)
	}
}

func TestSHA256MismatchKeepsNothing(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	hf.Add("o/r/m.bin", []byte("actual content"))
	f := newFetcher(t, hf)
	wrong := strings.Repeat("ab", 32)
	_, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin", SHA256: wrong})
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("error %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(f.Store.Dir, "*", "*"))
	for _, l := range left {
		if !strings.HasSuffix(l, ".lock") {
			t.Fatalf("a mismatched download left %s", l)
		}
	}
}

func TestPlainHTTPAndFileSources(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	content := []byte("plain https file")
	sha := hf.Add("o/r/x.bin", content)
	f := newFetcher(t, hf)
	res, err := f.Fetch(context.Background(), models.Request{Source: hf.CDNURL + "/blobs/" + sha})
	if err != nil || res.SHA256 != sha {
		t.Fatalf("http source: %+v %v", res, err)
	}
	local := filepath.Join(testsupport.TempDir(t), "local.safetensors")
	os.WriteFile(local, []byte("local weights"), 0o644)
	res, err = f.Fetch(context.Background(), models.Request{Source: "file://" + local})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f.Store.BlobPath(res.SHA256)); string(got) != "local weights" {
		t.Fatal("file:// copy wrong")
	}
}

func TestOfflineUsesStoreOnly(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	sha := hf.Add("o/r/m.bin", []byte("weights"))
	f := newFetcher(t, hf)
	if _, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"}); err != nil {
		t.Fatal(err)
	}
	f.Offline = true
	if res, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin", SHA256: sha}); err != nil || res.SHA256 != sha {
		t.Fatalf("offline from store: %v", err)
	}
	_, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/other.bin"})
	if err == nil || !strings.Contains(err.Error(), "--offline") {
		t.Fatalf("offline miss: %v", err)
	}
}

func TestPlaceHardLinksAndRefusesStrangers(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	hf.Add("o/r/m.bin", []byte("weights"))
	f := newFetcher(t, hf)
	res, err := f.Fetch(context.Background(), models.Request{Source: "hf://o/r/m.bin"})
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(testsupport.TempDir(t), "vae", "m.bin")
	if changed, err := f.Store.Place(res.SHA256, dest, false); err != nil || !changed {
		t.Fatalf("place: %v %v", changed, err)
	}
	a, _ := os.Stat(dest)
	b, _ := os.Stat(f.Store.BlobPath(res.SHA256))
	if !os.SameFile(a, b) {
		t.Fatal("not a hard link into the store")
	}
	if changed, err := f.Store.Place(res.SHA256, dest, false); err != nil || changed {
		t.Fatalf("second place: %v %v", changed, err)
	}
	other := filepath.Join(filepath.Dir(dest), "o.bin")
	os.WriteFile(other, []byte("user's file"), 0o644)
	if _, err := f.Store.Place(res.SHA256, other, false); err == nil {
		t.Fatal("a user's file was replaced")
	}
}

// An http model's start line gives its size, which the server's answer
// told (review of issue 12: it said "started (size unknown)").
func TestDownloadStartLineGivesTheSize(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	sha := hf.Add("o/r/weights.bin", randomBytes(t, 2048))
	f := newFetcher(t, hf)
	var log bytes.Buffer
	f.Progress = progress.NewPlain(&log, time.Hour)
	if _, err := f.Fetch(context.Background(), models.Request{Source: hf.CDNURL + "/blobs/" + sha}); err != nil {
		t.Fatal(err)
	}
	if want := sha + ": started (2.0 KiB)"; !strings.Contains(log.String(), want) {
		t.Errorf("progress lacks %q:\n%s", want, log.String())
	}
	if strings.Contains(log.String(), "size unknown") {
		t.Errorf("progress says the size is unknown:\n%s", log.String())
	}
}
