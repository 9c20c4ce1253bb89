package models_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/models"
)

func newCivitaiFetcher(t *testing.T, c *testsupport.CivitaiServer) *models.Fetcher {
	return &models.Fetcher{
		Store:           models.Store{Dir: testsupport.TempDir(t)},
		CivitaiEndpoint: c.URL,
		Backoff:         10 * time.Millisecond,
	}
}

func TestCivitaiResolvesThroughTheAPIAndKeepsTheTokenOnItsHost(t *testing.T) {
	c := testsupport.NewCivitaiServer(t)
	full, pruned := randomBytes(t, 120_000), randomBytes(t, 50_000)
	sums := c.AddVersion(128713, true,
		testsupport.CivitaiFile{Name: "dreamshaper_8.safetensors", Primary: true, Content: full},
		testsupport.CivitaiFile{Name: "dreamshaper_8_pruned.safetensors", Type: "Pruned Model", Content: pruned})
	c.RequireToken(testsupport.Secret())
	hf := testsupport.NewHFServer(t)
	f := newCivitaiFetcher(t, c)
	f.CivitaiToken = testsupport.Secret()
	f.HFEndpoint, f.HFToken = hf.URL, "hf-secret"

	res, err := f.Fetch(context.Background(), models.Request{Source: "civitai://128713", FileName: "dreamshaper_8.safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != sums[0] || res.Size != int64(len(full)) {
		t.Fatalf("result %+v, want the primary file %s", res, sums[0])
	}
	if want := c.URL + "/api/download/models/128713?type=Model&format=SafeTensor"; res.URL != want {
		t.Errorf("pinned URL %s, want the API's downloadUrl %s", res.URL, want)
	}
	if got, _ := os.ReadFile(f.Store.BlobPath(sums[0])); !bytes.Equal(got, full) {
		t.Error("stored content differs")
	}
	var apiAuth, cdn int
	for _, r := range c.Requests() {
		switch {
		case r.Host == "cdn" && r.Authorization != "":
			t.Errorf("the CDN saw a token: %+v", r)
		case r.Host == "cdn":
			cdn++
		case r.Authorization == "Bearer "+testsupport.Secret():
			apiAuth++
		default:
			t.Errorf("a Civitai request without the token, or with another: %+v", r)
		}
	}
	if apiAuth != 2 || cdn != 1 {
		t.Errorf("%d authorized API requests and %d CDN requests, want 2 and 1: %+v", apiAuth, cdn, c.Requests())
	}
	if len(hf.Requests()) != 0 {
		t.Error("the HF host was asked")
	}

	// The model's name picks another file of the version.
	res, err = f.Fetch(context.Background(), models.Request{Source: "https://civitai.com/api/download/models/128713#p", FileName: "dreamshaper_8_pruned.safetensors"})
	if err != nil || res.SHA256 != sums[1] {
		t.Fatalf("named file: %+v %v; want %s", res, err, sums[1])
	}
}

func TestCivitaiGatedWithoutTokenNamesTheVariable(t *testing.T) {
	c := testsupport.NewCivitaiServer(t)
	c.AddVersion(7, true, testsupport.CivitaiFile{Name: "lora.safetensors", Primary: true, Content: randomBytes(t, 1000)})
	c.RequireToken(testsupport.Secret())
	f := newCivitaiFetcher(t, c)
	f.HFToken = "hf-secret"
	_, err := f.Fetch(context.Background(), models.Request{Source: "civitai://7", FileName: "lora.safetensors"})
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "set CIVITAI_API_TOKEN") {
		t.Fatalf("got %v, want a 401 naming CIVITAI_API_TOKEN", err)
	}
	for _, r := range c.Requests() {
		if r.Authorization != "" {
			t.Errorf("a token was sent: %+v", r)
		}
	}
	f.CivitaiToken = "wrong"
	if _, err := f.Fetch(context.Background(), models.Request{Source: "civitai://7", FileName: "lora.safetensors"}); err == nil || !strings.Contains(err.Error(), "token from CIVITAI_API_TOKEN was refused") {
		t.Errorf("wrong token: %v", err)
	}
}

func TestCivitaiErrorsNameTheVersion(t *testing.T) {
	c := testsupport.NewCivitaiServer(t)
	sums := c.AddVersion(9, false, testsupport.CivitaiFile{Name: "a.safetensors", Primary: true, Content: []byte("a")})
	f := newCivitaiFetcher(t, c)
	_, err := f.Fetch(context.Background(), models.Request{Source: "civitai://404", FileName: "x.safetensors"})
	if err == nil || !strings.Contains(err.Error(), "civitai model version 404: not found") {
		t.Errorf("unknown version: %v", err)
	}
	pin := strings.Repeat("0", 64)
	_, err = f.Fetch(context.Background(), models.Request{Source: "civitai://9", FileName: "a.safetensors", SHA256: pin})
	if err == nil || !strings.Contains(err.Error(), "civitai lists sha256 "+sums[0]) || !strings.Contains(err.Error(), "pins "+pin) {
		t.Errorf("pinned sha differs: %v", err)
	}
	if _, ok := f.Store.Has(sums[0]); ok {
		t.Error("a file was stored")
	}
}

// A hostile or broken API answer must not point the fetcher at a local file.
func TestCivitaiRefusesANonHTTPDownloadURL(t *testing.T) {
	secret := testsupport.TempDir(t) + "/secret"
	os.WriteFile(secret, []byte("not for you"), 0o600)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"files": [{"name": "m.safetensors", "primary": true, "downloadUrl": "file://%s", "hashes": {}}]}`, secret)
	}))
	defer api.Close()
	f := &models.Fetcher{Store: models.Store{Dir: testsupport.TempDir(t)}, CivitaiEndpoint: api.URL}
	_, err := f.Fetch(context.Background(), models.Request{Source: "civitai://1", FileName: "m.safetensors"})
	if err == nil || !strings.Contains(err.Error(), "expected an https URL") {
		t.Fatalf("got %v, want the file:// downloadUrl refused", err)
	}
}
