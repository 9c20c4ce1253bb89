package models

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/versions"
)

// Setup is where the fetcher of a spec keeps its files and how it talks.
type Setup struct {
	// CacheDir is the cache root; the store is its models/ folder.
	CacheDir string
	// Offline: only the store is read.
	Offline bool
	// Log receives plain progress lines (nil: discarded).
	Log io.Writer
	// LookupEnv resolves the spec's ${VAR} and HF_TOKEN, HF_ENDPOINT,
	// CIVITAI_TOKEN, CIVITAI_ENDPOINT (nil: os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Progress reports downloads (nil: plain lines to Log every 10s).
	Progress progress.Reporter
	// Backoff is the first retry delay (0: the default).
	Backoff time.Duration
}

// ForSpec builds the model downloader with the spec's token and endpoint.
func ForSpec(spec *versions.Spec, set Setup) *Fetcher {
	lookupEnv, rep, log := set.LookupEnv, set.Progress, set.Log
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	if log == nil {
		log = io.Discard
	}
	values, _ := spec.ResolveEnv(lookupEnv)
	token, tokenVar := values["HF_TOKEN"], "HF_TOKEN"
	if refs := spec.SecretRefs()["HF_TOKEN"]; len(refs) > 0 {
		tokenVar = refs[0]
	}
	if token == "" {
		token, _ = lookupEnv("HF_TOKEN")
	}
	endpoint := values["HF_ENDPOINT"]
	if endpoint == "" {
		endpoint, _ = lookupEnv("HF_ENDPOINT")
	}
	civitaiToken, civitaiVar := values[CivitaiTokenVar], CivitaiTokenVar
	if refs := spec.SecretRefs()[CivitaiTokenVar]; len(refs) > 0 {
		civitaiVar = refs[0]
	}
	if civitaiToken == "" {
		civitaiToken, _ = lookupEnv(CivitaiTokenVar)
	}
	civitaiEndpoint := values["CIVITAI_ENDPOINT"]
	if civitaiEndpoint == "" {
		civitaiEndpoint, _ = lookupEnv("CIVITAI_ENDPOINT")
	}
	if rep == nil {
		rep = progress.NewPlain(log, 10*time.Second)
	}
	return &Fetcher{
		Store:      Store{Dir: filepath.Join(set.CacheDir, "models")},
		HFEndpoint: endpoint,
		HFToken:    token,
		TokenVar:   tokenVar,

		CivitaiEndpoint: civitaiEndpoint,
		CivitaiToken:    civitaiToken,
		CivitaiTokenVar: civitaiVar,
		Offline:         set.Offline,
		Backoff:         set.Backoff,
		Progress:        rep,
		Log:             log,
	}
}

// LockedFor finds the lock's entry for a model of the spec.
func LockedFor(l *versions.Lock, m versions.Model) (versions.LockedModel, bool) {
	for _, lm := range l.Models {
		if lm.Source == m.Source && lm.Dest == m.Dest() {
			return lm, true
		}
	}
	return versions.LockedModel{}, false
}

// MergeLocked records the models that succeeded, in spec order.
func MergeLocked(s *versions.Spec, l *versions.Lock, results []versions.LockedModel, errs []error) {
	out := []versions.LockedModel{}
	for i, m := range s.Models {
		if errs[i] == nil {
			out = append(out, results[i])
		} else if lm, ok := LockedFor(l, m); ok {
			out = append(out, lm)
		}
	}
	l.Models = out
}

// RequestFor is the fetch request of a spec's model (not yet pinned).
func RequestFor(m versions.Model) Request {
	req := Request{Source: m.Source, SHA256: m.SHA256, FileName: m.FileName(), Model: m.Name}
	if req.Model == "" {
		req.Model = m.Dest()
	}
	if src, err := versions.ParseSource(m.Source); err == nil && src.Scheme == "civitai" {
		// The name picks one file of the model version: the store must
		// not take another file of the same version for it.
		req.Source += "#" + url.PathEscape(m.FileName())
	}
	return req
}

// FetchLocked makes sure the store holds model m (pinned by the spec's or
// the lock's sha256 and URL) and returns its lock entry.
func FetchLocked(ctx context.Context, f *Fetcher, m versions.Model, l *versions.Lock) (versions.LockedModel, error) {
	return FetchLockedObserved(ctx, f, m, l, nil)
}

// FetchLockedObserved is FetchLocked with an observer of the downloaded
// bytes (see Request.Observe).
func FetchLockedObserved(ctx context.Context, f *Fetcher, m versions.Model, l *versions.Lock, observe func(int64) (io.Writer, func(string))) (versions.LockedModel, error) {
	req, lm, pinned := pinnedModelRequest(m, l)
	req.Observe = observe
	res, err := f.Fetch(ctx, req)
	if err != nil {
		return versions.LockedModel{}, fmt.Errorf("models: %s: %w", m.Dest(), err)
	}
	out := versions.LockedModel{
		Name: m.Name, Source: m.Source, Dest: m.Dest(),
		URL: repourl.Redact(res.URL), Revision: res.Revision, Size: res.Size, SHA256: res.SHA256,
	}
	if pinned && out.Revision == "" {
		out.Revision = lm.Revision
	}
	return out, nil
}
