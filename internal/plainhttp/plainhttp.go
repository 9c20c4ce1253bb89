// Package plainhttp keeps registry traffic, and so credentials, off plain
// HTTP except to this machine. go-containerregistry tries http:// beside
// https:// (and keeps whichever answers) for registries on RFC 1918
// addresses (10/8, 172.16/12, 192.168/16) and *.localhost names, then sends
// the credentials over the scheme that answered: on a shared network
// anyone who answers http:// first would get them. Guard refuses such
// requests unless the user named the registry in EnvAllow.
package plainhttp

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

// EnvAllow names the registries (host or host:port, comma-separated) that
// may be reached over plain HTTP besides localhost and loopback addresses.
const EnvAllow = "COMFY_INSECURE_REGISTRIES"

// Allowed is the list in EnvAllow.
func Allowed() []string {
	var out []string
	for _, h := range strings.Split(os.Getenv(EnvAllow), ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, strings.ToLower(h))
		}
	}
	return out
}

// Loopback reports whether host (a name or address, without port) is this
// machine: "localhost" or a loopback address.
func Loopback(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Permitted reports whether hostport (a URL's host: name or address and
// an optional port) may be reached over plain HTTP: loopback, or named in
// allowed (by host:port, or by host for any port).
func Permitted(hostport string, allowed []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if Loopback(host) {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(a, hostport) || strings.EqualFold(a, host) {
			return true
		}
	}
	return false
}

// Error is a plain HTTP request Guard refused.
type Error struct{ Host string }

func (e *Error) Error() string {
	return fmt.Sprintf("refusing plain HTTP to %s: credentials would travel unencrypted (registries are reached over https except on localhost; to allow plain HTTP to this registry, set %s=%s)", e.Host, EnvAllow, e.Host)
}

// Guard wraps inner so that plain HTTP requests go only to hosts
// Permitted with allowed; others fail with *Error before anything is sent.
func Guard(inner http.RoundTripper, allowed []string) http.RoundTripper {
	if g, ok := inner.(*guard); ok {
		inner = g.inner
	}
	return &guard{inner: inner, allowed: allowed}
}

type guard struct {
	inner   http.RoundTripper
	allowed []string
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !Permitted(req.URL.Host, g.allowed) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &Error{Host: req.URL.Host}
	}
	return g.inner.RoundTrip(req)
}
