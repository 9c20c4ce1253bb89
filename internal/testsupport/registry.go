package testsupport

import (
	"archive/tar"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is go-containerregistry's in-process registry behind an
// httptest server, counting the blob uploads it receives.
type Registry struct {
	// Host is "127.0.0.1:PORT", usable in references (plain HTTP).
	Host    string
	srv     *httptest.Server
	mu      sync.Mutex
	uploads int
	puts    []string
	reqs    []Request
	// links are the blobs each repository holds (NewScopedRegistry), by
	// repository; nil: every repository holds every blob.
	links map[string]map[string]bool
}

// Request is one request a test registry answered.
type Request struct {
	Method string
	Path   string
	Query  string
	Status int
	// Bytes is the size of the response body the registry sent.
	Bytes int64
}

func (r Request) String() string {
	s := r.Method + " " + r.Path
	if r.Query != "" {
		s += "?" + r.Query
	}
	return fmt.Sprintf("%s -> %d", s, r.Status)
}

// statusRecorder keeps the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// NewRegistry starts a registry that stops when the test ends.
func NewRegistry(t testing.TB) *Registry { return NewRegistryWithAuth(t, "", "") }

// NewRegistryWithAuth is NewRegistry requiring HTTP basic auth (when user
// is not empty), the way registries with passwords answer: 401 with a
// WWW-Authenticate challenge.
func NewRegistryWithAuth(t testing.TB, user, password string) *Registry {
	r := &Registry{}
	opts := []registry.Option{registry.Logger(log.New(io.Discard, "", 0))}
	if os.Getenv(KeepEnv) != "" {
		// Under the sentinel sweep, blobs (layers, configs) go to a kept
		// folder, so the sweep reads what was pushed too.
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(TempDir(t))))
	}
	h := registry.New(opts...)
	r.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		w := &statusRecorder{ResponseWriter: rw}
		defer func() {
			if w.status == 0 {
				w.status = http.StatusOK
			}
			r.mu.Lock()
			r.reqs = append(r.reqs, Request{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Status: w.status, Bytes: w.bytes})
			r.mu.Unlock()
		}()
		if u, p, ok := req.BasicAuth(); user != "" && (!ok || u != user || p != password) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		if r.links != nil && !r.scope(w, req) {
			return
		}
		if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/blobs/uploads/") {
			r.mu.Lock()
			r.uploads++
			r.puts = append(r.puts, req.URL.Query().Get("digest"))
			r.mu.Unlock()
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// Uploads returns how many blobs were uploaded so far and their digests.
func (r *Registry) Uploads() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uploads, append([]string(nil), r.puts...)
}

// Requests returns every request the registry answered so far, in order.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

func writeSimpleTar(file string, files map[string]string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			return err
		}
	}
	return tw.Close()
}

// NewScopedRegistry is NewRegistry whose repositories hold only the blobs
// pushed or mounted into them, as a distribution registry links blobs to
// repositories: a blob of another repository is unknown here (404) until
// it is uploaded or mounted (POST ?mount=D&from=REPO, answered 201 when
// REPO holds it, else an upload session opens, 202). A manifest is not
// checked against the links.
func NewScopedRegistry(t testing.TB) *Registry {
	r := NewRegistry(t)
	r.mu.Lock()
	r.links = map[string]map[string]bool{}
	r.mu.Unlock()
	return r
}

// scope answers what a repository-scoped registry answers differently
// and records the links; false: the request was answered.
func (r *Registry) scope(w http.ResponseWriter, req *http.Request) bool {
	repo, rest, ok := strings.Cut(strings.TrimPrefix(req.URL.Path, "/v2/"), "/blobs/")
	if !ok {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	link := func(repo, digest string) {
		if r.links[repo] == nil {
			r.links[repo] = map[string]bool{}
		}
		r.links[repo][digest] = true
	}
	q := req.URL.Query()
	switch {
	case req.Method == http.MethodPost && q.Get("mount") != "":
		if d := q.Get("mount"); r.links[q.Get("from")][d] {
			// The in-process registry ignores mounts (it holds every blob
			// everywhere): answer as a distribution registry does.
			link(repo, d)
			w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d)
			w.Header().Set("Docker-Content-Digest", d)
			w.WriteHeader(http.StatusCreated)
			return false
		}
		q.Del("mount")
		q.Del("from")
		req.URL.RawQuery = q.Encode() // an upload session, 202
	case req.Method == http.MethodPut && strings.HasPrefix(rest, "uploads/") && q.Get("digest") != "":
		link(repo, q.Get("digest")) // a failed upload leaves a link no test reads
	case (req.Method == http.MethodGet || req.Method == http.MethodHead) && strings.HasPrefix(rest, "sha256:"):
		if !r.links[repo][rest] {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return false
		}
	}
	return true
}
