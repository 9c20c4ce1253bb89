package models

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Current asks the hub what an hf:// source's revision holds now: the
// commit (X-Repo-Commit), the content's sha256 (X-Linked-Etag) and size,
// with one HEAD request (following the hub's redirect), downloading
// nothing. A revision that is a branch moves; this tells a lock whether
// its pin is still what the branch holds.
func (f *Fetcher) Current(ctx context.Context, req Request) (revision, sha256 string, size int64, err error) {
	u, err := f.resolveURL(req)
	if err != nil {
		return "", "", 0, err
	}
	resp, err := f.do(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return "", "", 0, fmt.Errorf("model %s: %w", req.Source, unwrapURLError(err))
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return "", "", 0, f.authError(resp)
		}
		return "", "", 0, fmt.Errorf("model %s: HEAD %s: %s", req.Source, redact(u), resp.Status)
	}
	sha256 = expectedSHA(Request{}, resp.Header.Get("X-Linked-Etag"))
	if sha256 == "" {
		return "", "", 0, fmt.Errorf("model %s: the hub gave no sha256 (X-Linked-Etag) for it", req.Source)
	}
	size = resp.ContentLength
	if s, err := strconv.ParseInt(resp.Header.Get("X-Linked-Size"), 10, 64); err == nil {
		size = s
	}
	return strings.TrimSpace(resp.Header.Get("X-Repo-Commit")), sha256, size, nil
}
