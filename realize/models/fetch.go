package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/versions"
)

// DefaultHFEndpoint is the Hugging Face host; HF_ENDPOINT overrides it as it
// does for huggingface_hub.
const DefaultHFEndpoint = "https://huggingface.co"

// Fetcher downloads model files into a Store.
type Fetcher struct {
	Store Store
	// Client makes the requests (nil: a client with sane timeouts).
	Client *http.Client
	// HFEndpoint is the Hugging Face base URL (default DefaultHFEndpoint).
	HFEndpoint string
	// HFToken is sent as a bearer token to the HF endpoint's host only.
	// TokenVar names where it came from, for error messages ("HF_TOKEN").
	HFToken, TokenVar string
	// CivitaiEndpoint is Civitai's base URL (default DefaultCivitaiEndpoint);
	// CivitaiToken is sent to that host only, CivitaiTokenVar names it.
	CivitaiEndpoint, CivitaiToken, CivitaiTokenVar string
	// Offline allows the store only.
	Offline bool
	// Attempts bounds tries per file (0: 8); Backoff is the first retry
	// delay (0: 1s), doubled each time up to MaxBackoff (0: 60s).
	Attempts            int
	Backoff, MaxBackoff time.Duration
	Progress            progress.Reporter
}

// Request is one model file to fetch.
type Request struct {
	Source string
	// SHA256 is the content the spec or the lock pins ("" if none).
	SHA256 string
	// URL is the pinned URL from a lock ("" to resolve the source).
	URL string
	// FileName is the name the file gets; it picks the file of a Civitai
	// model version that has several.
	FileName string
	// Observe, when set, sees the bytes of a download that starts from the
	// first byte with a known size, as they are written: the image build
	// computes a model's layer digest in the same pass, so a model file is
	// read once. done is called with the sha256 once the file is verified.
	Observe func(size int64) (w io.Writer, done func(sha256 string))
}

// Result is a fetched (or already stored) model file.
type Result struct {
	SHA256, URL, Revision string
	Size                  int64
	// Downloaded is false when the store already had the file.
	Downloaded bool
}

// Plan says what Fetch would do, without downloading: whether the file is
// stored, and its URL and size when a HEAD request can tell.
func (f *Fetcher) Plan(ctx context.Context, req Request) (Result, bool, error) {
	if size, ok := f.Store.Has(req.SHA256); ok {
		return Result{SHA256: req.SHA256, Size: size, URL: req.URL}, true, nil
	}
	if k, ok := f.Store.Lookup(req.Source); ok && (req.SHA256 == "" || req.SHA256 == k.SHA256) {
		return Result{SHA256: k.SHA256, Size: k.Size, URL: k.URL, Revision: k.Revision}, true, nil
	}
	if f.Offline {
		return Result{}, false, f.offlineErr(req)
	}
	req, err := f.resolveCivitai(ctx, req)
	if err != nil {
		return Result{}, false, err
	}
	u, err := f.resolveURL(req)
	if err != nil || u.Scheme == "file" {
		return Result{URL: redact(u)}, false, err
	}
	resp, err := f.do(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return Result{URL: u.String()}, false, nil // the plan still stands; the size is unknown
	}
	resp.Body.Close()
	size := resp.ContentLength
	if s, err := strconv.ParseInt(resp.Header.Get("X-Linked-Size"), 10, 64); err == nil {
		size = s
	}
	return Result{URL: u.String(), Size: size, Revision: resp.Header.Get("X-Repo-Commit")}, false, nil
}

// Fetch makes sure the store holds the file of req and returns it. Nothing
// is placed in the store unless its sha256 matches what req pins.
func (f *Fetcher) Fetch(ctx context.Context, req Request) (Result, error) {
	if size, ok := f.Store.Has(req.SHA256); ok {
		return Result{SHA256: req.SHA256, Size: size, URL: req.URL}, nil
	}
	if k, ok := f.Store.Lookup(req.Source); ok && (req.SHA256 == "" || req.SHA256 == k.SHA256) {
		return Result{SHA256: k.SHA256, Size: k.Size, URL: k.URL, Revision: k.Revision}, nil
	}
	if f.Offline {
		return Result{}, f.offlineErr(req)
	}
	req, err := f.resolveCivitai(ctx, req)
	if err != nil {
		return Result{}, err
	}
	u, err := f.resolveURL(req)
	if err != nil {
		return Result{}, err
	}
	tmpDir := filepath.Join(f.Store.Dir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return Result{}, err
	}
	base := filepath.Join(tmpDir, f.Store.sourceKey(req.Source))
	lock := flock.New(base + ".lock")
	if _, err := lock.TryLockContext(ctx, 100*time.Millisecond); err != nil {
		return Result{}, fmt.Errorf("model %s: lock download: %w", req.Source, err)
	}
	defer lock.Unlock()
	// Another process may have finished it while we waited for the lock.
	if k, ok := f.Store.Lookup(req.Source); ok && (req.SHA256 == "" || req.SHA256 == k.SHA256) {
		return Result{SHA256: k.SHA256, Size: k.Size, URL: k.URL, Revision: k.Revision}, nil
	}
	var res Result
	if u.Scheme == "file" {
		res, err = f.copyLocal(req, u.Path, base+".part")
	} else {
		res, err = f.download(ctx, req, u, base+".part")
	}
	if err != nil {
		return Result{}, err
	}
	res.Downloaded = true
	return res, nil
}

func (f *Fetcher) offlineErr(req Request) error {
	return fmt.Errorf("model %s: not in the cache and --offline forbids downloading it", req.Source)
}

func (f *Fetcher) endpoint() string {
	if f.HFEndpoint != "" {
		return strings.TrimRight(f.HFEndpoint, "/")
	}
	return DefaultHFEndpoint
}

// resolveURL maps a source to the URL to GET: the lock's pinned URL, or
// <endpoint>/<owner>/<repo>/resolve/<rev>/<path> for hf://.
func (f *Fetcher) resolveURL(req Request) (*url.URL, error) {
	if req.URL != "" {
		return url.Parse(req.URL)
	}
	src, err := versions.ParseSource(req.Source)
	if err != nil {
		return nil, err
	}
	if src.Scheme != "hf" {
		return src.URL, nil
	}
	return url.Parse(fmt.Sprintf("%s/%s/%s/resolve/%s/%s", f.endpoint(), src.Owner, src.Repo,
		url.PathEscape(src.Revision), escapePath(src.Path)))
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// client returns a client that keeps the token on the HF host and records
// the hub's headers (X-Repo-Commit, X-Linked-*) from redirect responses into hub.
func (f *Fetcher) client(hub http.Header) *http.Client {
	c := f.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 60 * time.Second,
			IdleConnTimeout:       90 * time.Second,
		}}
	}
	cp := *c
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		if req.Response != nil {
			for _, k := range hubHeaders {
				if v := req.Response.Header.Get(k); v != "" {
					hub.Set(k, v)
				}
			}
		}
		// A token is for its own host only (HF_TOKEN for the hub,
		// CIVITAI_API_TOKEN for Civitai), never for a CDN.
		if tok := f.tokenFor(req.URL.Host); tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		} else {
			req.Header.Del("Authorization")
		}
		return nil
	}
	return &cp
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

var hubHeaders = []string{"X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size"}

// do sends one request. The returned response's headers include the hub's
// headers seen on redirects, unless the final response has its own.
func (f *Fetcher) do(ctx context.Context, method, rawURL string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "comfy-image")
	if tok := f.tokenFor(req.URL.Host); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hub := http.Header{}
	resp, err := f.client(hub).Do(req)
	if err != nil {
		return nil, err
	}
	for k, v := range hub {
		if resp.Header.Get(k) == "" {
			resp.Header[k] = v
		}
	}
	return resp, nil
}

// partMeta sits beside a partial download so a resume only continues the
// same remote file.
type partMeta struct {
	URL  string `json:"url"`
	ETag string `json:"etag"`
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// download GETs u into part, resuming what an earlier run left, retrying
// 429, 5xx and cut connections with backoff, and hashing as it writes.
func (f *Fetcher) download(ctx context.Context, req Request, u *url.URL, part string) (Result, error) {
	shown := redact(u)
	name := path.Base(u.Path)
	tracker := f.reporter().Start(name, 0)
	var meta partMeta
	if data, err := os.ReadFile(part + ".json"); err == nil {
		_ = json.Unmarshal(data, &meta)
	}
	if meta.URL != u.String() {
		os.Remove(part)
		meta = partMeta{URL: u.String()}
	}
	attempts := f.Attempts
	if attempts <= 0 {
		attempts = 8
	}
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		res, retryAfter, err := f.getOnce(ctx, req, u, part, &meta, tracker)
		if err == nil {
			tracker.Done(nil)
			return res, nil
		}
		lastErr = err
		var perm permanentError
		if errors.As(err, &perm) || ctx.Err() != nil {
			break
		}
		if attempt < attempts {
			if err := sleep(ctx, f.delay(attempt, retryAfter)); err != nil {
				lastErr = err
				break
			}
		}
	}
	tracker.Done(lastErr)
	return Result{}, fmt.Errorf("model %s (%s): %w", req.Source, shown, lastErr)
}

// permanentError is a failure that retrying cannot fix.
type permanentError struct{ error }

func (f *Fetcher) getOnce(ctx context.Context, req Request, u *url.URL, part string, meta *partMeta, tracker progress.Tracker) (Result, time.Duration, error) {
	h := sha256.New()
	var have int64
	if fi, err := os.Stat(part); err == nil && meta.ETag != "" {
		have = fi.Size()
	}
	header := http.Header{}
	if have > 0 {
		header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		header.Set("If-Range", meta.ETag)
	}
	resp, err := f.do(ctx, http.MethodGet, u.String(), header)
	if err != nil {
		return Result{}, 0, fmt.Errorf("GET: %w", unwrapURLError(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		// resuming: hash what is already there
		if err := hashExisting(part, have, h); err != nil {
			return Result{}, 0, err
		}
	case resp.StatusCode == http.StatusOK:
		have = 0
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return Result{}, retryAfter(resp), fmt.Errorf("server answered %s", resp.Status)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return Result{}, 0, permanentError{f.authError(resp)}
	default:
		return Result{}, 0, permanentError{fmt.Errorf("server answered %s", resp.Status)}
	}
	// ETag is the final server's (what If-Range is compared with);
	// X-Linked-Etag is the hub's sha256 of an LFS file.
	etag := resp.Header.Get("ETag")
	total := resp.ContentLength
	if total >= 0 {
		total += have
	}
	if s, err := strconv.ParseInt(resp.Header.Get("X-Linked-Size"), 10, 64); err == nil {
		total = s
	}
	*meta = partMeta{URL: u.String(), ETag: etag}
	if data, err := json.Marshal(meta); err == nil {
		_ = versions.WriteFileAtomic(part+".json", data, 0o644)
	}
	flags := os.O_CREATE | os.O_WRONLY
	if have == 0 {
		flags |= os.O_TRUNC
	} else {
		flags |= os.O_APPEND
	}
	out, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return Result{}, 0, permanentError{err}
	}
	tracker.SetTotal(total)
	tracker.SetCurrent(have)
	writers := []io.Writer{out, h, trackWriter{tracker}}
	var observed func(string)
	if req.Observe != nil && have == 0 && total >= 0 {
		var w io.Writer
		w, observed = req.Observe(total)
		writers = append(writers, w)
	}
	n, copyErr := io.Copy(io.MultiWriter(writers...), resp.Body)
	if err := out.Close(); copyErr == nil {
		copyErr = err
	}
	if copyErr != nil {
		return Result{}, 0, fmt.Errorf("connection lost after %d bytes: %w", have+n, unwrapURLError(copyErr))
	}
	size := have + n
	if total >= 0 && size != total {
		return Result{}, 0, fmt.Errorf("got %d of %d bytes", size, total)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := f.verify(req, sum, firstNonEmpty(resp.Header.Get("X-Linked-Etag"), etag), part); err != nil {
		return Result{}, 0, err
	}
	if err := f.Store.adopt(part, sum); err != nil {
		return Result{}, 0, permanentError{err}
	}
	os.Remove(part + ".json")
	if observed != nil {
		observed(sum)
	}
	k := Known{Source: req.Source, URL: finalURL(u, resp), Revision: resp.Header.Get("X-Repo-Commit"), ETag: etag, Size: size, SHA256: sum}
	if err := f.Store.remember(k); err != nil {
		return Result{}, 0, permanentError{err}
	}
	return Result{SHA256: sum, URL: k.URL, Revision: k.Revision, Size: size}, 0, nil
}

// verify checks the content against the pinned sha256 and, for HF's LFS
// files, against the X-Linked-Etag the server sent; a mismatch discards it.
func (f *Fetcher) verify(req Request, sum, etag, part string) error {
	want := req.SHA256
	if want == "" {
		if e := strings.Trim(strings.TrimPrefix(etag, "W/"), `"`); sha256Hex.MatchString(e) {
			want = e
		}
	}
	if want != "" && sum != want {
		os.Remove(part)
		os.Remove(part + ".json")
		return permanentError{fmt.Errorf("sha256 mismatch: got %s, want %s; the download was discarded", sum, want)}
	}
	return nil
}

// finalURL pins an hf resolve URL to the commit the server resolved, so a
// lock downloads the same file later even if the branch moves.
func finalURL(u *url.URL, resp *http.Response) string {
	commit := resp.Header.Get("X-Repo-Commit")
	parts := strings.SplitN(strings.TrimPrefix(u.Path, "/"), "/", 5)
	if commit != "" && len(parts) == 5 && parts[2] == "resolve" {
		pinned := *u
		parts[3] = commit
		pinned.Path = "/" + strings.Join(parts, "/")
		pinned.RawPath = ""
		return pinned.String()
	}
	return u.String()
}

func (f *Fetcher) authError(resp *http.Response) error {
	host := resp.Request.URL.Host
	variable, token := f.tokenVarFor(host)
	if token == "" {
		return fmt.Errorf("server %s answered %s: this file needs a token; set %s in the environment (the spec's env refers to it)", host, resp.Status, variable)
	}
	return fmt.Errorf("server %s answered %s: the token from %s was refused (no access to this repository?)", host, resp.Status, variable)
}

func (f *Fetcher) copyLocal(req Request, src, part string) (Result, error) {
	in, err := os.Open(src)
	if err != nil {
		return Result{}, fmt.Errorf("model %s: %w", req.Source, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return Result{}, err
	}
	tracker := f.reporter().Start(filepath.Base(src), fi.Size())
	out, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return Result{}, err
	}
	h := sha256.New()
	writers := []io.Writer{out, h, trackWriter{tracker}}
	var observed func(string)
	if req.Observe != nil {
		var w io.Writer
		w, observed = req.Observe(fi.Size())
		writers = append(writers, w)
	}
	n, err := io.Copy(io.MultiWriter(writers...), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	tracker.Done(err)
	if err != nil {
		os.Remove(part)
		return Result{}, fmt.Errorf("model %s: copy: %w", req.Source, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := f.verify(req, sum, "", part); err != nil {
		return Result{}, fmt.Errorf("model %s: %w", req.Source, err)
	}
	if err := f.Store.adopt(part, sum); err != nil {
		return Result{}, err
	}
	if observed != nil {
		observed(sum)
	}
	k := Known{Source: req.Source, URL: req.Source, Size: n, SHA256: sum}
	return Result{SHA256: sum, URL: k.URL, Size: n}, f.Store.remember(k)
}

func (f *Fetcher) reporter() progress.Reporter {
	if f.Progress == nil {
		return progress.Discard()
	}
	return f.Progress
}

func (f *Fetcher) delay(attempt int, retryAfter time.Duration) time.Duration {
	base, maxDelay := f.Backoff, f.MaxBackoff
	if base <= 0 {
		base = time.Second
	}
	if maxDelay <= 0 {
		maxDelay = 60 * time.Second
	}
	d := base << (attempt - 1)
	if retryAfter > d {
		d = retryAfter
	}
	return min(d, maxDelay)
}

func retryAfter(resp *http.Response) time.Duration {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func hashExisting(file string, n int64, w io.Writer) error {
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.CopyN(w, in, n)
	return err
}

type trackWriter struct{ t progress.Tracker }

func (w trackWriter) Write(p []byte) (int, error) {
	w.t.Add(int64(len(p)))
	return len(p), nil
}

// unwrapURLError drops *url.Error's "Get URL:" prefix; the caller names
// the model already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	return versions.RedactURL(u.String())
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
