package checkout

import (
	"bufio"
	"bytes"
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
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/realize/models"
)

// lfsPointerMax is the largest pointer file git-lfs writes or reads.
const lfsPointerMax = 1024

// lfsPointer is a Git LFS pointer: the object's sha256 and size.
type lfsPointer struct {
	OID  string
	Size int64
}

var lfsOID = regexp.MustCompile(`^sha256:([0-9a-f]{64})$`)

// parseLFSPointer reads the pointer format of the Git LFS spec: a version
// line first, then sorted "key value" lines with oid and size; nil when
// data is not a pointer.
func parseLFSPointer(data []byte) *lfsPointer {
	if len(data) == 0 || len(data) >= lfsPointerMax || !bytes.HasSuffix(data, []byte("\n")) {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	var p lfsPointer
	first, prevKey, sized := true, "", false
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || key <= prevKey && !first {
			return nil
		}
		switch {
		case first:
			if key != "version" || (value != "https://git-lfs.github.com/spec/v1" && value != "https://hawser.github.com/spec/v1") {
				return nil
			}
			first = false
			continue
		case key == "oid":
			m := lfsOID.FindStringSubmatch(value)
			if m == nil {
				return nil
			}
			p.OID = m[1]
		case key == "size":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return nil
			}
			p.Size, sized = n, true
		}
		prevKey = key
	}
	if p.OID == "" || !sized || sc.Err() != nil {
		return nil
	}
	return &p
}

// readLFSPointer reads e as an LFS pointer (nil when it is not one).
func readLFSPointer(e treeEntry) (*lfsPointer, error) {
	data, err := readBlob(e, lfsPointerMax)
	if err != nil || data == nil {
		return nil, err
	}
	return parseLFSPointer(data), nil
}

// lfsSource fetches LFS objects into the content-addressed store the
// models use (<cache>/models/sha256/<oid>: an LFS object is a file named
// by its sha256, like a model).
type lfsSource struct {
	ctx     context.Context
	store   models.Store
	offline bool
	client  *http.Client
	lookup  func(string) (string, bool)
}

// WithLFS replaces Git LFS pointer files by their objects, fetched through
// the LFS batch API of the repository's remote (basic transfer), verified
// by the pointer's sha256 and size, and kept in the models' store of the
// cache root cacheDir; offline, only what the store holds is used.
func WithLFS(ctx context.Context, cacheDir string, offline bool, repoURL string) CheckoutOption {
	return func(c *checkoutConfig) {
		c.repoURL = repoURL
		c.lfs = &lfsSource{ctx: ctx, store: models.Store{Dir: filepath.Join(cacheDir, "models")}, offline: offline,
			client: &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 60 * time.Second},
				CheckRedirect: keepAuthOnHost},
			lookup: os.LookupEnv}
	}
}

// keepAuthOnHost follows up to 10 redirects and drops Authorization on one
// that leaves the first request's host:port: Go's client keeps it for the
// same host name on any port and for its subdomains, and the repo URL's
// credentials are for the LFS host only (a CDN gets none).
func keepAuthOnHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("too many redirects")
	}
	if req.URL.Host != via[0].URL.Host {
		req.Header.Del("Authorization")
	}
	return nil
}

// LFSError is an LFS object that could not be had.
type LFSError struct {
	Repo, Path string
	Err        error
}

func (e *LFSError) Error() string {
	return fmt.Sprintf("Git LFS object %s of %s: %v", e.Path, repourl.Redact(e.Repo), e.Err)
}

func (e *LFSError) Unwrap() error { return e.Err }

// LFSEndpoint is where git-lfs sends batch requests for repo:
// <repo>.git/info/lfs over https (ssh remotes use their host over https).
func LFSEndpoint(repo string) (*url.URL, error) {
	if m := scpRepo.FindStringSubmatch(repo); m != nil {
		repo = "https://" + m[2] + "/" + m[3]
	}
	u, err := repourl.Parse(repo)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "https", "http":
	case "ssh":
		u.Scheme, u.User, u.Host = "https", nil, u.Hostname()
	default:
		return nil, fmt.Errorf("no LFS endpoint for a %s:// repository", u.Scheme)
	}
	p := strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(p, ".git") {
		p += ".git"
	}
	u.Path, u.RawPath = p+"/info/lfs", ""
	return u, nil
}

var scpRepo = regexp.MustCompile(`^([A-Za-z0-9._-]+)@([A-Za-z0-9.-]+):(.+)$`)

type lfsBatchObject struct {
	OID     string `json:"oid"`
	Size    int64  `json:"size"`
	Actions map[string]struct {
		Href   string            `json:"href"`
		Header map[string]string `json:"header"`
	} `json:"actions,omitempty"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// fetch makes sure the store holds the objects of entries (pointer files
// of the repository at repoURL), asking the batch API for the missing ones.
func (s *lfsSource) fetch(repoURL string, entries []treeEntry) error {
	var missing []treeEntry
	for _, e := range entries {
		if size, ok := s.store.Has(e.lfs.OID); !ok || size != e.lfs.Size {
			missing = append(missing, e)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if s.offline {
		return &LFSError{Repo: repoURL, Path: missing[0].path, Err: errors.New("not in the cache, and --offline")}
	}
	endpoint, err := LFSEndpoint(repoURL)
	if err != nil {
		return &LFSError{Repo: repoURL, Path: missing[0].path, Err: err}
	}
	user, pass, err := repourl.ExpandUserinfo(endpoint, s.lookup)
	if err != nil {
		return err
	}
	endpoint.User = nil
	objects, err := s.batch(endpoint, user, pass, missing)
	if err != nil {
		return &LFSError{Repo: repoURL, Path: missing[0].path, Err: err}
	}
	for _, e := range missing {
		o, ok := objects[e.lfs.OID]
		if err := s.download(endpoint, user, pass, e, o, ok); err != nil {
			return &LFSError{Repo: repoURL, Path: e.path, Err: err}
		}
	}
	return nil
}

func (s *lfsSource) batch(endpoint *url.URL, user, pass string, entries []treeEntry) (map[string]lfsBatchObject, error) {
	type obj struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	}
	body := struct {
		Operation string   `json:"operation"`
		Transfers []string `json:"transfers"`
		Objects   []obj    `json:"objects"`
		HashAlgo  string   `json:"hash_algo"`
	}{Operation: "download", Transfers: []string{"basic"}, HashAlgo: "sha256"}
	for _, e := range entries {
		body.Objects = append(body.Objects, obj{e.lfs.OID, e.lfs.Size})
	}
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, endpoint.String()+"/objects/batch", bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/vnd.git-lfs+json")
	req.Header.Set("Content-Type", "application/vnd.git-lfs+json")
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("batch request: %s", strings.ReplaceAll(err.Error(), pass, "***"))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return nil, fmt.Errorf("batch request: HTTP %d; the LFS server wants credentials: give them in the repo URL from a variable (https://x-access-token:${GH_TOKEN}@host/org/repo)", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("batch request %s: HTTP %d", endpoint.Redacted(), resp.StatusCode)
	}
	var out struct {
		Transfer string           `json:"transfer"`
		Objects  []lfsBatchObject `json:"objects"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("batch response: %w", err)
	}
	if out.Transfer != "" && out.Transfer != "basic" {
		return nil, fmt.Errorf("batch response: transfer %q, expected basic", out.Transfer)
	}
	byOID := map[string]lfsBatchObject{}
	for _, o := range out.Objects {
		byOID[o.OID] = o
	}
	return byOID, nil
}

// download fetches one object into the store, verified by size and sha256.
// Our credentials go only to the endpoint's own host; elsewhere only the
// headers the server gave for the action.
func (s *lfsSource) download(endpoint *url.URL, user, pass string, e treeEntry, o lfsBatchObject, listed bool) error {
	switch {
	case !listed:
		return errors.New("the LFS server did not answer for it")
	case o.Error != nil:
		return fmt.Errorf("the LFS server answered %d: %s", o.Error.Code, o.Error.Message)
	}
	action, ok := o.Actions["download"]
	if !ok {
		return errors.New("the LFS server gave no download action")
	}
	href, err := url.Parse(action.Href)
	if err != nil || (href.Scheme != "https" && href.Scheme != "http") {
		return fmt.Errorf("download href %q: expected an https:// URL", action.Href)
	}
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, href.String(), nil)
	if err != nil {
		return err
	}
	for k, v := range action.Header {
		req.Header.Set(k, v)
	}
	if req.Header.Get("Authorization") == "" && href.Host == endpoint.Host && (user != "" || pass != "") {
		req.SetBasicAuth(user, pass)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("download: %s", href.Redacted())
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download %s: HTTP %d", href.Redacted(), resp.StatusCode)
	}
	dir := filepath.Dir(s.store.BlobPath(e.lfs.OID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".lfs-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, e.lfs.Size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if n != e.lfs.Size {
		return fmt.Errorf("downloaded %d bytes, the pointer says %d", n, e.lfs.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.lfs.OID {
		return fmt.Errorf("downloaded content has sha256 %s, the pointer says %s", got, e.lfs.OID)
	}
	return s.store.Adopt(tmp.Name(), e.lfs.OID)
}

// smudge points the pointer entries at their objects in the store: what a
// checkout writes is the object, and its id is the object's blob id.
func (s *lfsSource) smudge(repoURL string, files map[string]treeEntry, pointers []string) error {
	entries := make([]treeEntry, 0, len(pointers))
	for _, p := range pointers {
		entries = append(entries, files[p])
	}
	if err := s.fetch(repoURL, entries); err != nil {
		return err
	}
	for _, p := range pointers {
		e := files[p]
		// The store's check: a file changed through a hard link since it
		// was hashed is removed, and fetched again.
		file, err := s.store.Verified(e.lfs.OID)
		if err != nil {
			if err := s.fetch(repoURL, []treeEntry{e}); err != nil {
				return err
			}
			if file, err = s.store.Verified(e.lfs.OID); err != nil {
				return &LFSError{Repo: repoURL, Path: p, Err: err}
			}
		}
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		h := plumbing.NewHasher(plumbing.BlobObject, e.lfs.Size)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		e.lfsFile, e.work, e.size, e.eol = file, h.Sum(), e.lfs.Size, eolKeep
		files[p] = e
	}
	return nil
}
