package models

import (
	"context"
	"fmt"
	"io"

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
		req.SHA256, req.URL = lm.SHA256, lm.URL
	}
	return req, lm, pinned
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
