package testsupport

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// FaultKind is what a FaultProxy does instead of forwarding a request.
type FaultKind int

const (
	// Status500 and Status503 answer with that status.
	Status500 FaultKind = iota
	Status503
	// CutUpload takes a blob upload's body, then closes the connection
	// without an answer and without passing it on, as a network cut
	// would: the client cannot tell how much arrived.
	CutUpload
	// DigestInvalid answers 400 with the DIGEST_INVALID error code, as a
	// registry does when a blob's bytes do not match its digest.
	DigestInvalid
)

// Fault is one injected failure: the next Times requests that match fail.
type Fault struct {
	Kind  FaultKind
	Times int
	// Method matches the request method ("" any).
	Method string
	// Digest matches a blob: the digest= of an upload's commit, or the
	// sha256 of an upload's body ("" any).
	Digest string
	// PathContains matches part of the path ("" any).
	PathContains string
}

// FaultProxy is a reverse proxy on loopback in front of a registry that
// injects faults and records every request it sees.
type FaultProxy struct {
	// Host is "127.0.0.1:PORT", usable in references (plain HTTP).
	Host   string
	mu     sync.Mutex
	faults []*Fault
	reqs   []Request
	fired  int
}

// NewFaultProxy starts a proxy to upstream ("127.0.0.1:PORT"); it stops
// when the test ends.
func NewFaultProxy(t testing.TB, upstream string) *FaultProxy {
	p := &FaultProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: upstream})
	rp.ErrorLog = log.New(io.Discard, "", 0) // a client giving up is part of the tests
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		var body []byte
		if req.Body != nil {
			body, _ = io.ReadAll(req.Body)
			req.Body.Close()
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		w := &statusRecorder{ResponseWriter: rw}
		fault := p.match(req, body)
		defer p.record(req, w)
		if fault == nil {
			rp.ServeHTTP(w, req)
			return
		}
		switch fault.Kind {
		case Status500:
			http.Error(w, "injected fault", http.StatusInternalServerError)
		case Status503:
			http.Error(w, "injected fault", http.StatusServiceUnavailable)
		case DigestInvalid:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}`)
		case CutUpload:
			w.status = -1
			if hj, ok := rw.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(srv.Close)
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// Inject adds a fault; faults are tried in the order they were added.
func (p *FaultProxy) Inject(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &f)
}

// Clear removes every fault not yet used up.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
}

// Fired is how many requests got a fault so far.
func (p *FaultProxy) Fired() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fired
}

// Requests returns every request seen so far; a cut one has status -1.
func (p *FaultProxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.reqs...)
}

// BlobUploads counts the blob uploads that reached the registry and
// succeeded (a commit PUT answered 201), by digest.
func BlobUploads(reqs []Request) []string {
	var digests []string
	for _, r := range reqs {
		if r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/uploads/") && r.Status == http.StatusCreated {
			q, _ := url.ParseQuery(r.Query)
			digests = append(digests, q.Get("digest"))
		}
	}
	return digests
}

// Mounts lists the cross-repository mounts a registry accepted (a POST
// with mount= answered 201), by digest.
func Mounts(reqs []Request) []string {
	var digests []string
	for _, r := range reqs {
		if r.Method == http.MethodPost && strings.Contains(r.Query, "mount=") && r.Status == http.StatusCreated {
			q, _ := url.ParseQuery(r.Query)
			digests = append(digests, q.Get("mount"))
		}
	}
	return digests
}

func (p *FaultProxy) match(req *http.Request, body []byte) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	bodyDigest := ""
	if len(body) > 0 {
		sum := sha256.Sum256(body)
		bodyDigest = "sha256:" + hex.EncodeToString(sum[:])
	}
	for _, f := range p.faults {
		if f.Times <= 0 || (f.Method != "" && f.Method != req.Method) ||
			(f.PathContains != "" && !strings.Contains(req.URL.Path, f.PathContains)) {
			continue
		}
		if f.Digest != "" && f.Digest != req.URL.Query().Get("digest") && f.Digest != bodyDigest {
			continue
		}
		f.Times--
		p.fired++
		return f
	}
	return nil
}

func (p *FaultProxy) record(req *http.Request, w *statusRecorder) {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = append(p.reqs, Request{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Status: status})
}
