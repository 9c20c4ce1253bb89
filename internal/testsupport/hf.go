package testsupport

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// HFServer behaves like the Hugging Face hub for downloads: the hub host
// answers /<owner>/<repo>/resolve/<rev>/<path> with a 302 to a second,
// CDN-like host, carrying X-Repo-Commit, X-Linked-Etag (the sha256) and
// X-Linked-Size; the CDN serves the bytes with ETag and Range. Failures can
// be injected: a token requirement (401), 429 with Retry-After, 503, and a
// connection cut mid-body.
type HFServer struct {
	// URL is the hub (use it as HF_ENDPOINT); CDNURL the file host.
	URL, CDNURL string
	// Commit is what every revision resolves to.
	Commit string

	hub, cdn *httptest.Server
	mu       sync.Mutex
	files    map[string][]byte // "owner/repo/path" -> content
	blobs    map[string][]byte // sha256 -> content
	token    string
	fail     []int // status codes to answer before the next successes
	cutAfter int64 // cut the next CDN body after this many bytes (0: off)
	rate     int64 // CDN bytes per second (0: unthrottled)
	log      []HFRequest
	fault    HFFault
	noETag   bool
	lastMod  time.Time
}

// HFFault is a lasting misbehaviour of the CDN host, for the fault suite.
type HFFault int

const (
	// FaultNone serves bodies as they are.
	FaultNone HFFault = iota
	// FaultTruncate sends the full Content-Length but only half the body,
	// then drops the connection, on every request.
	FaultTruncate
	// FaultShortLength announces a Content-Length 100 bytes short of the
	// body (the client reads a truncated file that looks complete).
	FaultShortLength
	// FaultLongLength announces a Content-Length 100 bytes longer than the
	// body and ends the response after the body.
	FaultLongLength
)

// SetFault makes every later CDN download misbehave as f.
func (s *HFServer) SetFault(f HFFault) { s.mu.Lock(); s.fault = f; s.mu.Unlock() }

// NoETag makes the CDN send no ETag; with lastModified non-zero it sends
// that Last-Modified instead (and honours If-Range with a date).
func (s *HFServer) NoETag(lastModified time.Time) {
	s.mu.Lock()
	s.noETag, s.lastMod = true, lastModified
	s.mu.Unlock()
}

// BlobURL is the CDN's URL of content with the given sha256: a plain HTTP
// file without the hub's headers (no X-Linked-Etag).
func (s *HFServer) BlobURL(sha string) string { return s.CDNURL + "/blobs/" + sha }

// HFRequest is one request the server saw.
type HFRequest struct {
	Host          string // "hub" or "cdn"
	Method, Path  string
	Authorization string
	Range         string
	Status        int
}

// NewHFServer starts both hosts; they stop when the test ends.
func NewHFServer(t testing.TB) *HFServer {
	s := &HFServer{files: map[string][]byte{}, blobs: map[string][]byte{}, Commit: strings.Repeat("c0ffee12", 5)}
	s.cdn = httptest.NewServer(http.HandlerFunc(s.serveCDN))
	s.hub = httptest.NewServer(http.HandlerFunc(s.serveHub))
	s.URL, s.CDNURL = s.hub.URL, s.cdn.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops both hosts; later requests fail to connect.
func (s *HFServer) Close() { s.hub.Close(); s.cdn.Close() }

// Add publishes content at owner/repo/path and returns its sha256; adding
// other content at the same path later changes the file (as a new commit).
func (s *HFServer) Add(repoPath string, content []byte) string {
	sum := sha256.Sum256(content)
	sha := hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[repoPath] = content
	s.blobs[sha] = content
	return sha
}

// RequireSweepToken makes the hub require Secret() when the sentinel
// sweep runs (COMFY_TEST_SECRET set, the same value in HF_TOKEN), so the
// suite's downloads really carry the secret the sweep then looks for.
func RequireSweepToken(s *HFServer) {
	if os.Getenv(SecretEnv) != "" {
		s.RequireToken(Secret())
	}
}

// RequireToken makes the hub answer 401 unless "Bearer <token>" is sent.
func (s *HFServer) RequireToken(token string) { s.mu.Lock(); s.token = token; s.mu.Unlock() }

// FailNext makes the next requests to the hub answer these statuses (429
// comes with Retry-After: 1).
func (s *HFServer) FailNext(statuses ...int) {
	s.mu.Lock()
	s.fail = append(s.fail, statuses...)
	s.mu.Unlock()
}

// CutNextAfter makes the next CDN download drop the connection after n bytes.
func (s *HFServer) CutNextAfter(n int64) { s.mu.Lock(); s.cutAfter = n; s.mu.Unlock() }

// Throttle limits CDN bodies to bytesPerSecond (0: unlimited).
func (s *HFServer) Throttle(bytesPerSecond int64) {
	s.mu.Lock()
	s.rate = bytesPerSecond
	s.mu.Unlock()
}

// Requests returns a copy of the request log.
func (s *HFServer) Requests() []HFRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]HFRequest(nil), s.log...)
}

func (s *HFServer) record(host string, r *http.Request, status int) {
	s.mu.Lock()
	s.log = append(s.log, HFRequest{Host: host, Method: r.Method, Path: r.URL.Path,
		Authorization: r.Header.Get("Authorization"), Range: r.Header.Get("Range"), Status: status})
	s.mu.Unlock()
}

func (s *HFServer) serveHub(w http.ResponseWriter, r *http.Request) {
	// /<owner>/<repo>/resolve/<rev>/<path...>
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 5)
	if len(parts) < 5 || parts[2] != "resolve" {
		s.record("hub", r, 404)
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	token := s.token
	var fail int
	if len(s.fail) > 0 {
		fail, s.fail = s.fail[0], s.fail[1:]
	}
	content, ok := s.files[parts[0]+"/"+parts[1]+"/"+parts[4]]
	s.mu.Unlock()
	if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
		s.record("hub", r, 401)
		http.Error(w, "Invalid credentials in Authorization header", http.StatusUnauthorized)
		return
	}
	if fail != 0 {
		s.record("hub", r, fail)
		if fail == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, http.StatusText(fail), fail)
		return
	}
	if !ok {
		s.record("hub", r, 404)
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	sum := sha256.Sum256(content)
	sha := hex.EncodeToString(sum[:])
	w.Header().Set("X-Repo-Commit", s.Commit)
	w.Header().Set("X-Linked-Etag", `"`+sha+`"`)
	w.Header().Set("X-Linked-Size", strconv.Itoa(len(content)))
	w.Header().Set("ETag", `"`+sha+`"`)
	w.Header().Set("Location", s.CDNURL+"/blobs/"+sha+"?signature=cdn-"+parts[3])
	s.record("hub", r, http.StatusFound)
	w.WriteHeader(http.StatusFound)
}

func (s *HFServer) serveCDN(w http.ResponseWriter, r *http.Request) {
	sha := strings.TrimPrefix(r.URL.Path, "/blobs/")
	s.mu.Lock()
	content, ok := s.blobs[sha]
	cut, rate, fault, noETag, lastMod := s.cutAfter, s.rate, s.fault, s.noETag, s.lastMod
	if r.Method == http.MethodGet {
		s.cutAfter = 0
	}
	s.mu.Unlock()
	if !ok {
		s.record("cdn", r, 404)
		http.NotFound(w, r)
		return
	}
	validator := `"cdn-` + sha[:16] + `"`
	if noETag {
		validator = ""
		if !lastMod.IsZero() {
			validator = lastMod.UTC().Format(http.TimeFormat)
			w.Header().Set("Last-Modified", validator)
		}
	} else {
		w.Header().Set("ETag", validator)
	}
	status := http.StatusOK
	if r.Header.Get("Range") != "" {
		status = http.StatusPartialContent
	}
	if cut == 0 && rate == 0 && fault == FaultNone && !noETag {
		s.record("cdn", r, status)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
		return
	}
	// Serve a full or ranged body by hand: slowly, cut short or lying.
	// A Range is honoured when If-Range matches the validator or, as
	// servers do, when there is no If-Range.
	start := int64(0)
	ifRange := r.Header.Get("If-Range")
	if rg := r.Header.Get("Range"); rg != "" && (ifRange == "" || ifRange == validator) {
		fmt.Sscanf(rg, "bytes=%d-", &start)
		start = min(start, int64(len(content)))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(content)-1, len(content)))
	} else {
		status = http.StatusOK
	}
	s.record("cdn", r, status)
	body := content[start:]
	length := len(body)
	switch fault {
	case FaultTruncate:
		cut = int64(len(body) / 2)
		if cut == 0 {
			cut = 1
		}
	case FaultShortLength:
		length = max(0, len(body)-100)
	case FaultLongLength:
		length = len(body) + 100
	}
	w.Header().Set("Content-Length", strconv.Itoa(length))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if fault == FaultShortLength {
		body = body[:length]
	}
	const chunk = 32 * 1024
	var sent int64
	for len(body) > 0 {
		n := min(chunk, len(body))
		if cut > 0 && sent+int64(n) > cut {
			n = int(cut - sent)
		}
		w.Write(body[:n])
		w.(http.Flusher).Flush()
		body, sent = body[n:], sent+int64(n)
		if cut > 0 && sent >= cut {
			panic(http.ErrAbortHandler) // drops the connection mid-body
		}
		if rate > 0 {
			time.Sleep(time.Duration(int64(n) * int64(time.Second) / rate))
		}
	}
	if fault == FaultLongLength {
		panic(http.ErrAbortHandler) // the announced rest never comes
	}
}
