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
	"syscall"
	"time"

	"github.com/gofrs/flock"

	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/internal/repourl"
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
	// Log receives one line per notable event (a damaged store file, a
	// resumed download); nil discards them.
	Log io.Writer
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
	// Model is the model's name, else its destination: what `lock
	// --update` takes, named in the refusal of an edited file:// model.
	Model string
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
	stored := f.localStored(req) // an edited file:// model is read again, as Fetch does
	if size, ok := f.Store.Has(req.SHA256); ok && stored {
		return Result{SHA256: req.SHA256, Size: size, URL: req.URL}, true, nil
	}
	if k, ok := f.Store.Lookup(req.Source); ok && stored && (req.SHA256 == "" || req.SHA256 == k.SHA256) {
		return Result{SHA256: k.SHA256, Size: k.Size, URL: k.URL, Revision: k.Revision}, true, nil
	}
	if _, local := f.LocalPath(req); f.Offline && !local {
		return Result{}, false, f.offlineErr(req)
	}
	req, err := f.resolveCivitai(ctx, req)
	if err != nil {
		return Result{}, false, err
	}
	u, err := f.resolveURL(req)
	if err != nil {
		return Result{URL: redact(u)}, false, err
	}
	if u.Scheme == "file" {
		fi, err := os.Stat(u.Path)
		if err != nil {
			return Result{URL: redact(u)}, false, fmt.Errorf("model %s: %w", req.Source, err)
		}
		return Result{URL: redact(u), Size: fi.Size()}, false, nil
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
// is placed in the store unless its sha256 matches what req pins. A stored
// file that changed since it was verified (see Store.Verified) is removed
// and downloaded again, or, offline, named in the error.
func (f *Fetcher) Fetch(ctx context.Context, req Request) (Result, error) {
	res, ok, damaged := f.fromStore(req)
	if ok {
		return res, nil
	}
	if _, local := f.LocalPath(req); f.Offline && !local { // reading a local file is no download
		if damaged != nil {
			return Result{}, fmt.Errorf("model %s: %w; --offline forbids downloading it again", req.Source, damaged)
		}
		return Result{}, f.offlineErr(req)
	}
	if damaged != nil {
		f.logf("model %s: %v; downloading it again", req.Source, damaged)
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
	if res, ok, _ := f.fromStore(req); ok {
		return res, nil
	}
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

// fromStore returns the stored, verified file of req. damaged is set when
// the store held it but its content had changed (it is gone now).
func (f *Fetcher) fromStore(req Request) (res Result, ok bool, damaged error) {
	if !f.localStored(req) {
		return Result{}, false, nil
	}
	if _, has := f.Store.Has(req.SHA256); has {
		res = Result{SHA256: req.SHA256, URL: req.URL}
	} else if k, has := f.Store.Lookup(req.Source); has && (req.SHA256 == "" || req.SHA256 == k.SHA256) {
		res = Result{SHA256: k.SHA256, Size: k.Size, URL: k.URL, Revision: k.Revision}
	} else {
		return Result{}, false, nil
	}
	p, err := f.Store.Verified(res.SHA256)
	if err != nil {
		var d *DamagedError
		if errors.As(err, &d) {
			return Result{}, false, d
		}
		return Result{}, false, nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return Result{}, false, nil
	}
	res.Size = fi.Size()
	return res, true, nil
}

// localStored says whether the store's copy may stand for req: always for
// a download (its bytes are pinned by sha256), and for a file:// source
// only while the file has the stamp it had when copied in (Known.Stamp):
// a file edited since must be read again, not answered with its old bytes.
func (f *Fetcher) localStored(req Request) bool {
	src, local := f.LocalPath(req)
	if !local {
		return true
	}
	k, ok := f.Store.Lookup(req.Source)
	if !ok || k.Stamp == nil || (req.SHA256 != "" && k.SHA256 != req.SHA256) {
		return false
	}
	now, err := StampFile(src)
	return err == nil && now == *k.Stamp
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Log != nil {
		fmt.Fprintf(f.Log, format+"\n", args...)
	}
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
// same remote file: the server's validator (a strong ETag, else
// Last-Modified) goes in If-Range; with neither, a resume is trusted on the
// size alone, and only when the sha256 is known (it is checked at the end).
type partMeta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Size         int64  `json:"size,omitempty"`
	SHA256       string `json:"sha256,omitempty"`
	// FinalURL and Revision are what the lock records (see finalURL).
	FinalURL string `json:"final_url,omitempty"`
	Revision string `json:"revision,omitempty"`
}

// validator is what If-Range carries, "" when the server gave none usable.
func (m partMeta) validator() string {
	if m.ETag != "" && !strings.HasPrefix(m.ETag, "W/") {
		return m.ETag
	}
	return m.LastModified
}

func (m partMeta) resumable() bool {
	return m.validator() != "" || (m.SHA256 != "" && m.Size > 0)
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// download GETs u into part, resuming what an earlier run left, retrying
// 429, 5xx and cut connections with backoff, and hashing as it writes.
func (f *Fetcher) download(ctx context.Context, req Request, u *url.URL, part string) (Result, error) {
	shown := redact(u)
	name := path.Base(u.Path)
	// The unit starts at the first answer, whose headers give the size,
	// so its start line says how big the file is.
	var tracker progress.Tracker
	start := func(total int64) progress.Tracker {
		if tracker == nil {
			tracker = f.reporter().Start(name, max(total, 0))
		}
		return tracker
	}
	var meta partMeta
	if data, err := os.ReadFile(part + ".json"); err == nil {
		_ = json.Unmarshal(data, &meta)
	}
	if meta.URL != u.String() || (req.SHA256 != "" && meta.SHA256 != "" && meta.SHA256 != req.SHA256) {
		os.Remove(part)
		meta = partMeta{URL: u.String()}
	}
	attempts := f.Attempts
	if attempts <= 0 {
		attempts = 8
	}
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		res, retryAfter, err := f.getOnce(ctx, req, u, part, &meta, start)
		if err == nil {
			start(meta.Size).Done(nil)
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
	start(meta.Size).Done(lastErr)
	return Result{}, fmt.Errorf("model %s (%s): %w", req.Source, shown, lastErr)
}

// permanentError is a failure that retrying cannot fix.
type permanentError struct{ error }

// diskError marks a failed write to the cache: a full disk is not a
// network error and is never retried.
func diskError(file string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return permanentError{fmt.Errorf("writing %s: no space left on device", file)}
	}
	return permanentError{fmt.Errorf("writing %s: %w", file, err)}
}

// fileWriter tags its write errors, so a copy can tell them from the
// connection's read errors.
type fileWriter struct{ f *os.File }

type writeFailed struct{ error }

func (w fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = writeFailed{err}
	}
	return n, err
}

// discardPart removes a partial download and its metadata.
func discardPart(part string) {
	os.Remove(part)
	os.Remove(part + ".json")
}

func (f *Fetcher) getOnce(ctx context.Context, req Request, u *url.URL, part string, meta *partMeta, start func(total int64) progress.Tracker) (Result, time.Duration, error) {
	h := sha256.New()
	var have int64
	if fi, err := os.Stat(part); err == nil && meta.resumable() {
		have = fi.Size()
	}
	if have > 0 && have == meta.Size && meta.SHA256 != "" {
		// Every byte arrived before the connection (or the tool) died:
		// the sha256 decides, with no request.
		if res, err := f.adoptComplete(req, part, meta); err == nil {
			return res, 0, nil
		}
		have = 0
	}
	header := http.Header{}
	if have > 0 {
		header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		if v := meta.validator(); v != "" {
			header.Set("If-Range", v)
		}
	}
	resp, err := f.do(ctx, http.MethodGet, u.String(), header)
	if err != nil {
		return Result{}, 0, fmt.Errorf("GET: %w", unwrapURLError(err))
	}
	defer resp.Body.Close()
	resumed := false
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if err := checkContentRange(resp, have, meta.Size); err != nil {
			discardPart(part)
			return Result{}, 0, err
		}
		// resuming: hash what is already there
		if err := hashExisting(part, have, h); err != nil {
			return Result{}, 0, err
		}
		resumed = true
		f.logf("model %s: resumed at %s", req.Source, progress.Size(have))
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
	if !resumed {
		*meta = partMeta{URL: u.String(), ETag: etag, LastModified: resp.Header.Get("Last-Modified"), Size: total,
			SHA256:   expectedSHA(req, firstNonEmpty(resp.Header.Get("X-Linked-Etag"), etag)),
			FinalURL: finalURL(u, resp), Revision: resp.Header.Get("X-Repo-Commit")}
		if data, err := json.Marshal(meta); err == nil {
			_ = fileutil.WriteAtomic(part+".json", data, 0o644)
		}
	}
	flags := os.O_CREATE | os.O_WRONLY
	if have == 0 {
		flags |= os.O_TRUNC
	} else {
		flags |= os.O_APPEND
	}
	out, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return Result{}, 0, diskError(part, err)
	}
	tracker := start(total)
	tracker.SetTotal(total)
	tracker.SetCurrent(have)
	writers := []io.Writer{fileWriter{out}, h, trackWriter{tracker}}
	var observed func(string)
	if req.Observe != nil && have == 0 && total >= 0 {
		var w io.Writer
		w, observed = req.Observe(total)
		writers = append(writers, w)
	}
	n, copyErr := io.Copy(io.MultiWriter(writers...), resp.Body)
	if err := out.Close(); copyErr == nil && err != nil {
		copyErr = writeFailed{err}
	}
	var wf writeFailed
	if errors.As(copyErr, &wf) {
		discardPart(part)
		return Result{}, 0, diskError(part, wf.error)
	}
	if copyErr != nil {
		return Result{}, 0, fmt.Errorf("connection lost after %d bytes: %w", have+n, unwrapURLError(copyErr))
	}
	size := have + n
	if total >= 0 && size != total {
		// The body ended cleanly at the wrong size: the server lied about
		// its length; what it sent cannot be resumed from.
		discardPart(part)
		return Result{}, 0, fmt.Errorf("size mismatch: got %d of %d bytes", size, total)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := f.verify(req, sum, meta.SHA256, part); err != nil {
		if resumed {
			// The resumed part may be what differs: start over once more.
			return Result{}, 0, fmt.Errorf("%v (after resuming at %s; downloading from the start)", err, progress.Size(have))
		}
		return Result{}, 0, err
	}
	if err := f.Store.adopt(part, sum, 0o444); err != nil {
		return Result{}, 0, diskError(f.Store.BlobPath(sum), err)
	}
	os.Remove(part + ".json")
	if observed != nil {
		observed(sum)
	}
	k := Known{Source: req.Source, URL: finalURL(u, resp), Revision: resp.Header.Get("X-Repo-Commit"), ETag: etag, Size: size, SHA256: sum}
	if err := f.Store.remember(k); err != nil {
		return Result{}, 0, diskError(f.Store.indexPath(k.Source), err)
	}
	return Result{SHA256: sum, URL: k.URL, Revision: k.Revision, Size: size}, 0, nil
}

// adoptComplete stores a partial download that is in fact complete and
// has the expected sha256; otherwise it discards it.
func (f *Fetcher) adoptComplete(req Request, part string, meta *partMeta) (Result, error) {
	sum, err := fileutil.SHA256(part)
	if err != nil || sum != meta.SHA256 {
		discardPart(part)
		return Result{}, errors.New("incomplete")
	}
	if err := f.Store.adopt(part, sum, 0o444); err != nil {
		return Result{}, err
	}
	os.Remove(part + ".json")
	k := Known{Source: req.Source, URL: firstNonEmpty(meta.FinalURL, meta.URL), Revision: meta.Revision, ETag: meta.ETag, Size: meta.Size, SHA256: sum}
	if err := f.Store.remember(k); err != nil {
		return Result{}, err
	}
	return Result{SHA256: sum, URL: k.URL, Revision: k.Revision, Size: k.Size}, nil
}

// checkContentRange makes sure a 206 continues at have, and, when the
// size is known, that the file is still that size.
func checkContentRange(resp *http.Response, have, size int64) error {
	var start, end, total int64
	cr := resp.Header.Get("Content-Range")
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &start, &end, &total); err != nil || start != have {
		return fmt.Errorf("resume at %d: the server answered Content-Range %q; downloading from the start", have, cr)
	}
	if size > 0 && total != size {
		return fmt.Errorf("resume at %d: the file is now %d bytes, was %d; downloading from the start", have, total, size)
	}
	return nil
}

// expectedSHA is the sha256 the content must have: the pinned one, else
// the hub's X-Linked-Etag when it is a sha256.
func expectedSHA(req Request, etag string) string {
	if req.SHA256 != "" {
		return req.SHA256
	}
	if e := strings.Trim(strings.TrimPrefix(etag, "W/"), `"`); sha256Hex.MatchString(e) {
		return e
	}
	return ""
}

// verify checks the content against the sha256 it must have (see
// expectedSHA); a mismatch discards the download.
func (f *Fetcher) verify(req Request, sum, want, part string) error {
	if want != "" && sum != want {
		discardPart(part)
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

// copyLocal copies a file:// model into the store. The copy keeps the
// source's read permissions (a private 0600 file stays private: 0400) and
// is never wider than 0444: store files are read-only, as they are hard
// linked into targets.
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
	if !fi.Mode().IsRegular() {
		return Result{}, fmt.Errorf("model %s: %s is not a regular file", req.Source, src)
	}
	before := StampOf(fi)
	tracker := f.reporter().Start(filepath.Base(src), fi.Size())
	out, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		tracker.Done(err)
		return Result{}, fmt.Errorf("model %s: %w", req.Source, diskError(part, err))
	}
	h := sha256.New()
	writers := []io.Writer{fileWriter{out}, h, trackWriter{tracker}}
	var observed func(string)
	if req.Observe != nil {
		var w io.Writer
		w, observed = req.Observe(fi.Size())
		writers = append(writers, w)
	}
	n, err := io.Copy(io.MultiWriter(writers...), in)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = writeFailed{cerr}
	}
	tracker.Done(err)
	if err != nil {
		discardPart(part)
		var wf writeFailed
		if errors.As(err, &wf) {
			return Result{}, fmt.Errorf("model %s: %w", req.Source, diskError(part, wf.error))
		}
		return Result{}, fmt.Errorf("model %s: copy: %w", req.Source, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if after, err := StampFile(src); err != nil || after != before || n != before.Size {
		discardPart(part)
		return Result{}, fmt.Errorf("model %s: %s changed while it was read; run again once it is complete", req.Source, src)
	}
	if req.SHA256 != "" && sum != req.SHA256 {
		discardPart(part)
		return Result{}, changedFileError(req, src, sum)
	}
	if err := f.Store.adopt(part, sum, fi.Mode().Perm()&0o444); err != nil {
		return Result{}, fmt.Errorf("model %s: %w", req.Source, diskError(f.Store.BlobPath(sum), err))
	}
	if observed != nil {
		observed(sum)
	}
	k := Known{Source: req.Source, URL: req.Source, Size: n, SHA256: sum, Stamp: &before}
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
	return repourl.Redact(u.String())
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
