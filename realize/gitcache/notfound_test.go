package gitcache_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/gitcache"
)

// TestMissingHTTPRepoIsNamed: an HTTP(S) repository that is not there (the
// git server answers 404) or a URL that is no git repository (a web server
// answering 200 with nothing) says so with the status and the URL, its
// token left out, and is the spec's fault (exit 2); a server failing (500)
// is not.
func TestMissingHTTPRepoIsNamed(t *testing.T) {
	fx := newFixture(t)
	const secret = "s3cr3t-token-value"
	withToken := func(u string) string { return strings.Replace(u, "http://", "http://x-access-token:"+secret+"@", 1) }
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer empty.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer failing.Close()
	for _, tc := range []struct {
		url  string
		want []string
		bad  bool
	}{
		{fx.srv.RepoURL("nodes/missing"), []string{"repository not found (HTTP 404)", fx.srv.URL + "/nodes/missing"}, true},
		{empty.URL + "/org/repo", []string{"not a git repository (HTTP 200 with an empty answer", empty.URL + "/org/repo"}, true},
		{failing.URL + "/org/repo", []string{"500", failing.URL + "/org/repo"}, false},
	} {
		_, err := gitcache.New(testsupport.TempDir(t)).Resolve(context.Background(), withToken(tc.url), "", "")
		if err == nil {
			t.Fatalf("%s: no error", tc.url)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.url, err, w)
			}
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error %q shows the token", tc.url, err)
		}
		var bad interface{ BadInput() bool }
		if got := errors.As(err, &bad) && bad.BadInput(); got != tc.bad {
			t.Errorf("%s: error %q marked bad input (exit 2) = %v, want %v", tc.url, err, got, tc.bad)
		}
	}
}
