package realize

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/versions"
)

// NewFetcher builds the model downloader with the spec's token and endpoint.
func NewFetcher(spec *versions.Spec, opts Options, lookupEnv func(string) (string, bool), rep progress.Reporter, backoff time.Duration) *models.Fetcher {
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
	civitaiToken, civitaiVar := values[models.CivitaiTokenVar], models.CivitaiTokenVar
	if refs := spec.SecretRefs()[models.CivitaiTokenVar]; len(refs) > 0 {
		civitaiVar = refs[0]
	}
	if civitaiToken == "" {
		civitaiToken, _ = lookupEnv(models.CivitaiTokenVar)
	}
	civitaiEndpoint := values["CIVITAI_ENDPOINT"]
	if civitaiEndpoint == "" {
		civitaiEndpoint, _ = lookupEnv("CIVITAI_ENDPOINT")
	}
	if rep == nil {
		rep = progress.NewPlain(opts.log(), 10*time.Second)
	}
	return &models.Fetcher{
		Store:      models.Store{Dir: filepath.Join(opts.CacheDir, "models")},
		HFEndpoint: endpoint,
		HFToken:    token,
		TokenVar:   tokenVar,

		CivitaiEndpoint: civitaiEndpoint,
		CivitaiToken:    civitaiToken,
		CivitaiTokenVar: civitaiVar,
		Offline:         opts.Offline,
		Backoff:         backoff,
		Progress:        rep,
		Log:             opts.log(),
	}
}

// LockedModelFor finds the lock's entry for a model of the spec.
func LockedModelFor(l *versions.Lock, m versions.Model) (versions.LockedModel, bool) {
	for _, lm := range l.Models {
		if lm.Source == m.Source && lm.Dest == m.Dest() {
			return lm, true
		}
	}
	return versions.LockedModel{}, false
}

// MergeLockedModels records the models that succeeded, in spec order.
func MergeLockedModels(s *versions.Spec, l *versions.Lock, results []versions.LockedModel, errs []error) {
	out := []versions.LockedModel{}
	for i, m := range s.Models {
		if errs[i] == nil {
			out = append(out, results[i])
		} else if lm, ok := LockedModelFor(l, m); ok {
			out = append(out, lm)
		}
	}
	l.Models = out
}

// EnvFile holds the spec's literal env values (runtime configuration);
// values from the caller's environment are secrets and never written.
func EnvFile(spec *versions.Spec, lookupEnv func(string) (string, bool)) []byte {
	_, secret := spec.ResolveEnv(lookupEnv)
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		if !secret[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	// Both starters source it before ComfyUI: run.sh of a realized target
	// (runScript) and entrypoint.sh of an image (layers/worker).
	b.WriteString("# Runtime environment of this version, sourced by run.sh (realized target) and entrypoint.sh (image).\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(spec.Env[k], "'", `'\''`))
	}
	return []byte(b.String())
}

// ModelRequest is the fetch request of a spec's model (not yet pinned).
func ModelRequest(m versions.Model) models.Request {
	req := models.Request{Source: m.Source, SHA256: m.SHA256, FileName: m.FileName()}
	if src, err := versions.ParseSource(m.Source); err == nil && src.Scheme == "civitai" {
		// The name picks one file of the model version: the store must
		// not take another file of the same version for it.
		req.Source += "#" + url.PathEscape(m.FileName())
	}
	return req
}

// FetchModel makes sure the store holds model m (pinned by the spec's or
// the lock's sha256 and URL) and returns its lock entry.
func FetchModel(ctx context.Context, f *models.Fetcher, m versions.Model, l *versions.Lock) (versions.LockedModel, error) {
	return FetchModelObserved(ctx, f, m, l, nil)
}

// FetchModelObserved is FetchModel with an observer of the downloaded
// bytes (see models.Request.Observe).
func FetchModelObserved(ctx context.Context, f *models.Fetcher, m versions.Model, l *versions.Lock, observe func(int64) (io.Writer, func(string))) (versions.LockedModel, error) {
	req := ModelRequest(m)
	req.Observe = observe
	lm, haveLock := LockedModelFor(l, m)
	pinned := haveLock && (m.SHA256 == "" || m.SHA256 == lm.SHA256)
	if pinned {
		req.SHA256, req.URL = lm.SHA256, lm.URL
	}
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
