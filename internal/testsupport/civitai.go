package testsupport

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// CivitaiServer answers like civitai.com for downloads: the API host serves
// GET /api/v1/model-versions/<id> (files[] with name, sizeKB, type,
// primary, hashes with an upper-case SHA256, downloadUrl) and
// GET /api/download/models/<id>?type=...&format=..., which answers 401
// without the token for a gated version and otherwise a 307 to a second,
// CDN-like host with a signed URL. The CDN serves the bytes with ETag and
// Range.
type CivitaiServer struct {
	// URL is the Civitai host (use it as CIVITAI_ENDPOINT); CDNURL the file host.
	URL, CDNURL string

	api, cdn *httptest.Server
	mu       sync.Mutex
	versions map[string]*civitaiVersion
	blobs    map[string][]byte
	token    string
	log      []CivitaiRequest
}

// CivitaiFile is one file of a model version.
type CivitaiFile struct {
	Name    string
	Type    string // "Model" (default), "Pruned Model", "VAE", ...
	Primary bool
	Content []byte
}

// CivitaiRequest is one request the server saw.
type CivitaiRequest struct {
	Host          string // "api" or "cdn"
	Method, Path  string
	Query         string
	Authorization string
	Status        int
}

type civitaiVersion struct {
	gated bool
	files []CivitaiFile
}

// NewCivitaiServer starts both hosts; they stop when the test ends.
func NewCivitaiServer(t testing.TB) *CivitaiServer {
	s := &CivitaiServer{versions: map[string]*civitaiVersion{}, blobs: map[string][]byte{}}
	s.cdn = httptest.NewServer(http.HandlerFunc(s.serveCDN))
	s.api = httptest.NewServer(http.HandlerFunc(s.serveAPI))
	s.URL, s.CDNURL = s.api.URL, s.cdn.URL
	t.Cleanup(func() { s.api.Close(); s.cdn.Close() })
	return s
}

// AddVersion publishes a model version; gated versions need the token to
// download (their metadata stays public, as on Civitai). It returns the
// sha256 of each file, in order.
func (s *CivitaiServer) AddVersion(id int, gated bool, files ...CivitaiFile) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sums []string
	for i := range files {
		if files[i].Type == "" {
			files[i].Type = "Model"
		}
		sum := sha256.Sum256(files[i].Content)
		sha := hex.EncodeToString(sum[:])
		s.blobs[sha] = files[i].Content
		sums = append(sums, sha)
	}
	s.versions[fmt.Sprint(id)] = &civitaiVersion{gated: gated, files: files}
	return sums
}

// RequireToken sets the API token gated downloads need.
func (s *CivitaiServer) RequireToken(token string) { s.mu.Lock(); s.token = token; s.mu.Unlock() }

// Requests returns a copy of the request log.
func (s *CivitaiServer) Requests() []CivitaiRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]CivitaiRequest(nil), s.log...)
}

func (s *CivitaiServer) record(host string, r *http.Request, status int) {
	s.mu.Lock()
	s.log = append(s.log, CivitaiRequest{Host: host, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Authorization: r.Header.Get("Authorization"), Status: status})
	s.mu.Unlock()
}

func (s *CivitaiServer) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.record("api", r, status)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (s *CivitaiServer) serveAPI(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/api/v1/model-versions/"):
		s.serveVersion(w, r, strings.TrimPrefix(r.URL.Path, "/api/v1/model-versions/"))
	case strings.HasPrefix(r.URL.Path, "/api/download/models/"):
		s.serveDownload(w, r, strings.TrimPrefix(r.URL.Path, "/api/download/models/"))
	default:
		s.fail(w, r, http.StatusNotFound, "Not found")
	}
}

func (s *CivitaiServer) serveVersion(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	v, ok := s.versions[id]
	s.mu.Unlock()
	if !ok {
		s.fail(w, r, http.StatusNotFound, "No model version with id "+id)
		return
	}
	type file struct {
		ID          int               `json:"id"`
		Name        string            `json:"name"`
		SizeKB      float64           `json:"sizeKB"`
		Type        string            `json:"type"`
		Primary     bool              `json:"primary,omitempty"`
		Hashes      map[string]string `json:"hashes"`
		DownloadURL string            `json:"downloadUrl"`
	}
	var files []file
	for i, f := range v.files {
		sum := sha256.Sum256(f.Content)
		files = append(files, file{
			ID: 1000 + i, Name: f.Name, SizeKB: float64(len(f.Content)) / 1024, Type: f.Type, Primary: f.Primary,
			Hashes:      map[string]string{"SHA256": strings.ToUpper(hex.EncodeToString(sum[:])), "AutoV2": strings.ToUpper(hex.EncodeToString(sum[:5]))},
			DownloadURL: fmt.Sprintf("%s/api/download/models/%s?type=%s&format=SafeTensor", s.URL, id, strings.ReplaceAll(f.Type, " ", "%20")),
		})
	}
	s.record("api", r, http.StatusOK)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"id": id, "modelId": 1, "name": "v1.0", "baseModel": "SD 1.5", "files": files,
		"model": map[string]any{"name": "test model", "type": "Checkpoint"}})
}

func (s *CivitaiServer) serveDownload(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	v, ok := s.versions[strings.TrimSuffix(id, "/")]
	token := s.token
	s.mu.Unlock()
	if !ok {
		s.fail(w, r, http.StatusNotFound, "Model not found")
		return
	}
	if v.gated && (token == "" || r.Header.Get("Authorization") != "Bearer "+token) {
		s.fail(w, r, http.StatusUnauthorized, "The creator of this asset requires you to be logged in to download it")
		return
	}
	want := r.URL.Query().Get("type")
	var pick *CivitaiFile
	for i, f := range v.files {
		if (want == "" && f.Primary) || f.Type == want {
			pick = &v.files[i]
			break
		}
	}
	if pick == nil {
		s.fail(w, r, http.StatusNotFound, "File not found")
		return
	}
	sum := sha256.Sum256(pick.Content)
	s.record("api", r, http.StatusTemporaryRedirect)
	w.Header().Set("Location", fmt.Sprintf("%s/files/%s/%s?X-Amz-Signature=cdn", s.CDNURL, hex.EncodeToString(sum[:]), pick.Name))
	w.WriteHeader(http.StatusTemporaryRedirect)
}

func (s *CivitaiServer) serveCDN(w http.ResponseWriter, r *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/files/"), "/", 2)
	s.mu.Lock()
	content, ok := s.blobs[parts[0]]
	s.mu.Unlock()
	if !ok {
		s.record("cdn", r, 404)
		http.NotFound(w, r)
		return
	}
	status := http.StatusOK
	if r.Header.Get("Range") != "" {
		status = http.StatusPartialContent
	}
	s.record("cdn", r, status)
	w.Header().Set("ETag", `"`+parts[0][:16]+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
}
