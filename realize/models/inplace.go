package models

import (
	"context"
	"fmt"
	"io"
	"net/url"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/versions"
)

// pinnedModelRequest is the fetch request of m, pinned to the lock's
// sha256 and URL when the lock has m and the spec pins nothing else (the
// rule of FetchModel); pinned reports whether it is.
func pinnedModelRequest(m versions.Model, l *versions.Lock) (Request, versions.LockedModel, bool) {
	req := RequestFor(m)
	lm, haveLock := LockedFor(l, m)
	pinned := haveLock && (m.SHA256 == "" || m.SHA256 == lm.SHA256)
	if pinned {
		req.SHA256, req.URL = lm.SHA256, lockedURL(m, lm)
	}
	return req, lm, pinned
}

// lockedURL is the URL of the lock's entry lm to fetch m from, when the
// lock may say it: the lock is read from the cache or --lock FILE, and
// its url must not turn a download into the read of a local file (nor
// move a file:// model to another file). A file:// model is read from the
// spec's path; another from the lock's http(s) URL (an hf:// one pinned
// to its commit), else from its source.
func lockedURL(m versions.Model, lm versions.LockedModel) string {
	if src, err := versions.ParseSource(m.Source); err == nil && src.Scheme == "file" {
		return ""
	}
	if u, err := url.Parse(lm.URL); err == nil && (u.Scheme == "https" || u.Scheme == "http") {
		return lm.URL
	}
	return ""
}

// LocalModel says whether m, pinned by l, is a file:// model, which an
// image build reads where it lies instead of copying it into the store:
// the file, and the sha256 it must have ("" when nothing pins it yet).
func LocalModel(f *Fetcher, m versions.Model, l *versions.Lock) (file, sha256 string, ok bool) {
	req, _, _ := pinnedModelRequest(m, l)
	file, ok = f.LocalPath(req)
	return file, req.SHA256, ok
}

// ReadModelInPlace reads the file:// model m once where it lies (see
// Fetcher.ReadLocal), feeding observe the same bytes, and returns
// its lock entry and the read. A file whose bytes are not the pinned ones
// is an error naming the model; the store is not written.
func ReadModelInPlace(ctx context.Context, f *Fetcher, m versions.Model, l *versions.Lock, observe func(int64) (io.Writer, func(string))) (versions.LockedModel, Local, error) {
	req, _, _ := pinnedModelRequest(m, l)
	req.Observe = observe
	res, err := f.ReadLocal(ctx, req)
	if err != nil {
		return versions.LockedModel{}, Local{}, fmt.Errorf("models: %s: %w", m.Dest(), err)
	}
	return LocalLockedModel(m, res.SHA256, res.Size), res, nil
}

// LocalLockedModel is the lock entry of a file:// model of the given
// content: what FetchModel records for it.
func LocalLockedModel(m versions.Model, sha256 string, size int64) versions.LockedModel {
	return versions.LockedModel{Name: m.Name, Source: m.Source, Dest: m.Dest(), URL: repourl.Redact(m.Source), Size: size, SHA256: sha256}
}
