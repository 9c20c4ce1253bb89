package publish

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
)

// An https request that meets a plain-HTTP registry (a localhost registry,
// which go-containerregistry pings over https and http at once) or a
// certificate that does not verify fails the same way every time: it is
// not retried, so the ping's http attempt answers at once instead of after
// the 300 ms fallback delay. A cut connection still is retried.
func TestRetryableLeavesTLSFailuresAlone(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer plain.Close()
	_, err := plain.Client().Get(strings.Replace(plain.URL, "http://", "https://", 1) + "/v2/")
	if err == nil {
		t.Fatal("https to a plain-HTTP server succeeded")
	}
	if retryable(err) {
		t.Errorf("https to a plain-HTTP server is retried: %v", err)
	}
	tlsServer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer tlsServer.Close()
	_, err = http.Get(tlsServer.URL + "/v2/") // the default client does not trust the test CA
	if err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	if retryable(err) {
		t.Errorf("an untrusted certificate is retried: %v", err)
	}
	if !retryable(errors.Join(errors.New("write: broken pipe"), syscall.ECONNRESET)) {
		t.Error("a reset connection is no longer retried")
	}
}
