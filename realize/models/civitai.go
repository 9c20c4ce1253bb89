package models

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/versions"
)

// DefaultCivitaiEndpoint is Civitai's host; CIVITAI_ENDPOINT overrides it.
const DefaultCivitaiEndpoint = "https://civitai.com"

// CivitaiTokenVar is the variable Civitai's token comes from by default.
const CivitaiTokenVar = "CIVITAI_API_TOKEN"

// civitaiVersion is the part of GET /api/v1/model-versions/<id> we read.
type civitaiVersion struct {
	Files []civitaiFile `json:"files"`
}

type civitaiFile struct {
	Name        string            `json:"name"`
	SizeKB      float64           `json:"sizeKB"`
	Primary     bool              `json:"primary"`
	DownloadURL string            `json:"downloadUrl"`
	Hashes      map[string]string `json:"hashes"`
}

func (f *Fetcher) civitaiEndpoint() string {
	if f.CivitaiEndpoint != "" {
		return strings.TrimRight(f.CivitaiEndpoint, "/")
	}
	return DefaultCivitaiEndpoint
}

// tokenFor is the bearer token a host may see: HF_TOKEN for the hub,
// CIVITAI_API_TOKEN for Civitai, nothing for any other host (their CDNs).
func (f *Fetcher) tokenFor(host string) string {
	switch host {
	case hostOf(f.endpoint()):
		return f.HFToken
	case hostOf(f.civitaiEndpoint()):
		return f.CivitaiToken
	}
	return ""
}

// tokenVarFor names where a host's token comes from, for error messages.
func (f *Fetcher) tokenVarFor(host string) (variable, token string) {
	if host == hostOf(f.civitaiEndpoint()) && host != hostOf(f.endpoint()) {
		if f.CivitaiTokenVar != "" {
			return f.CivitaiTokenVar, f.CivitaiToken
		}
		return CivitaiTokenVar, f.CivitaiToken
	}
	if f.TokenVar != "" {
		return f.TokenVar, f.HFToken
	}
	return "HF_TOKEN", f.HFToken
}

// resolveCivitai turns a civitai source without a pinned URL into the file's
// download URL and sha256, from the public API. The file is the one named
// req.FileName, else the version's primary file, else its only file.
func (f *Fetcher) resolveCivitai(ctx context.Context, req Request) (Request, error) {
	if req.URL != "" {
		return req, nil
	}
	src, err := versions.ParseSource(req.Source)
	if err != nil || src.Scheme != "civitai" {
		return req, err
	}
	api := f.civitaiEndpoint() + "/api/v1/model-versions/" + src.ModelVersionID
	v, err := f.civitaiGet(ctx, api)
	if err != nil {
		return req, fmt.Errorf("model %s: civitai model version %s: %w", req.Source, src.ModelVersionID, err)
	}
	file, err := pickCivitaiFile(v.Files, req.FileName)
	if err != nil {
		return req, fmt.Errorf("model %s: civitai model version %s: %w", req.Source, src.ModelVersionID, err)
	}
	u, err := f.checkCivitaiDownload(file.DownloadURL)
	if err != nil {
		return req, fmt.Errorf("model %s: civitai model version %s, file %s: %w", req.Source, src.ModelVersionID, file.Name, err)
	}
	sha := strings.ToLower(file.Hashes["SHA256"])
	if !sha256Hex.MatchString(sha) {
		sha = "" // the download is pinned by its own hash in the lock
	}
	if req.SHA256 != "" && sha != "" && req.SHA256 != sha {
		return req, fmt.Errorf("model %s: civitai lists sha256 %s for %s, the spec pins %s", req.Source, sha, file.Name, req.SHA256)
	}
	if req.SHA256 == "" {
		req.SHA256 = sha
	}
	req.URL = u.String()
	return req, nil
}

// civitaiGet reads the API's answer, retrying 429 and 5xx like downloads.
func (f *Fetcher) civitaiGet(ctx context.Context, api string) (*civitaiVersion, error) {
	attempts := max(f.Attempts, 1)
	if f.Attempts <= 0 {
		attempts = 8
	}
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		resp, err := f.do(ctx, http.MethodGet, api, http.Header{"Accept": {"application/json"}})
		if err != nil {
			lastErr = fmt.Errorf("GET %s: %w", api, unwrapURLError(err))
		} else {
			v, retry, err := f.readCivitai(resp, api)
			resp.Body.Close()
			if err == nil || !retry {
				return v, err
			}
			lastErr = err
			if attempt < attempts {
				if err := sleep(ctx, f.delay(attempt, retryAfter(resp))); err != nil {
					return nil, err
				}
			}
			continue
		}
		if attempt < attempts {
			if err := sleep(ctx, f.delay(attempt, 0)); err != nil {
				return nil, err
			}
		}
	}
	return nil, lastErr
}

func (f *Fetcher) readCivitai(resp *http.Response, api string) (*civitaiVersion, bool, error) {
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound:
		return nil, false, fmt.Errorf("not found (GET %s answered %s); check the model version id (the number after modelVersionId= on the model's page)", api, resp.Status)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, false, f.authError(resp)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, true, fmt.Errorf("GET %s answered %s", api, resp.Status)
	default:
		return nil, false, fmt.Errorf("GET %s answered %s", api, resp.Status)
	}
	var v civitaiVersion
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&v); err != nil {
		return nil, false, fmt.Errorf("GET %s: not a model version: %v", api, err)
	}
	return &v, false, nil
}

func pickCivitaiFile(files []civitaiFile, name string) (civitaiFile, error) {
	var names []string
	for _, f := range files {
		if f.Name == name {
			return f, nil
		}
		names = append(names, f.Name)
	}
	for _, f := range files {
		if f.Primary {
			return f, nil
		}
	}
	if len(files) == 1 {
		return files[0], nil
	}
	return civitaiFile{}, fmt.Errorf("no file named %q and no primary file; expected the model's name to be one of %s", name, strings.Join(names, ", "))
}

// checkCivitaiDownload accepts an API-given download URL only over http(s),
// and plain http only when the endpoint itself is plain http: the answer is
// untrusted and must not point the fetcher at a local file.
func (f *Fetcher) checkCivitaiDownload(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("downloadUrl %q: expected an https URL", repourl.Redact(raw))
	}
	endpointScheme := "https"
	if e, err := url.Parse(f.civitaiEndpoint()); err == nil {
		endpointScheme = e.Scheme
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && endpointScheme == "http") {
		return nil, fmt.Errorf("downloadUrl %q: expected an https URL", repourl.Redact(raw))
	}
	return u, nil
}
