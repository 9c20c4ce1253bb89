package publish_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/comfy-image/comfy-image/internal/plainhttp"
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/publish"
)

// privateRegistry answers, as an HTTP proxy, for a registry on a private
// address that speaks only plain HTTP (https through it fails), asking
// for basic auth; it keeps every Authorization header it was sent.
type privateRegistry struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
}

func newPrivateRegistry(t *testing.T) *privateRegistry {
	p := &privateRegistry{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			http.Error(w, "no TLS here", http.StatusBadGateway)
			return
		}
		if a := r.Header.Get("Authorization"); a != "" {
			p.mu.Lock()
			p.auth = append(p.auth, a)
			p.mu.Unlock()
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="private"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *privateRegistry) transport() http.RoundTripper {
	u, _ := url.Parse(p.srv.URL)
	return &http.Transport{Proxy: http.ProxyURL(u)}
}

func (p *privateRegistry) sent() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.auth...)
}

// go-containerregistry tries plain HTTP for a registry on an RFC 1918
// address and sends the credentials over it when it answers: the probe
// refuses plain HTTP there (no credential leaves), naming the variable
// that allows it; with the registry named there, plain HTTP is used.
func TestNoCredentialsOverPlainHTTPToAPrivateAddress(t *testing.T) {
	const host = "10.255.255.1:5000"
	dir := testsupport.TempDir(t)
	t.Setenv("DOCKER_CONFIG", dir)
	auth := base64.StdEncoding.EncodeToString([]byte("ci:" + testsupport.Secret()))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.SecretInput(t, filepath.Join(dir, "config.json"))

	p := newPrivateRegistry(t)
	t.Setenv(plainhttp.EnvAllow, "")
	err := publish.NewRegistry(repo(t, host, "comfy/demo"), publish.WithTransport(p.transport())).Probe(context.Background())
	if got := p.sent(); len(got) > 0 {
		t.Fatalf("credentials went over plain HTTP to %s: %d requests", host, len(got))
	}
	var refused *plainhttp.Error
	if err == nil || !errors.As(err, &refused) || !strings.Contains(err.Error(), "refusing plain HTTP to "+host) || !strings.Contains(err.Error(), plainhttp.EnvAllow+"="+host) {
		t.Fatalf("probe of a plain-HTTP private registry: %v; want a refusal naming %s", err, plainhttp.EnvAllow)
	}

	t.Setenv(plainhttp.EnvAllow, "registry.example, "+host)
	if err := publish.NewRegistry(repo(t, host, "comfy/demo"), publish.WithTransport(p.transport())).Probe(context.Background()); err != nil {
		t.Fatalf("with %s=%s: %v", plainhttp.EnvAllow, host, err)
	}
	if len(p.sent()) == 0 {
		t.Fatal("with the registry allowed, the probe did not log in over plain HTTP")
	}
}
