package publish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/comfy-image/comfy-image/internal/parallel"
	"github.com/comfy-image/comfy-image/internal/plainhttp"
	"github.com/comfy-image/comfy-image/internal/progress"
)

// Option configures a publisher.
type Option func(*options)

type options struct {
	transport    http.RoundTripper
	keychain     authn.Keychain
	jobs         int
	reporter     progress.Reporter
	log          io.Writer
	names        map[string]string
	backoff      remote.Backoff
	probeTimeout time.Duration
	mountRecord  string
	pullFrom     []name.Repository
}

// makeOptions is the one place defaults are set.
func makeOptions(opts ...Option) options {
	o := options{
		transport: remote.DefaultTransport,
		keychain:  authn.DefaultKeychain,
		jobs:      parallel.Uploads,
		reporter:  progress.Discard(),
		log:       io.Discard,
		// At most 5 attempts per request; the waits (1, 2, 4, 8 s, each
		// +-50% jitter) stay well under 60 s in total.
		backoff: remote.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.5, Steps: 5, Cap: 20 * time.Second},
		// A dead registry or a refused credential must fail before any
		// packing, and quickly.
		probeTimeout: 1500 * time.Millisecond,
	}
	for _, opt := range opts {
		opt(&o)
	}
	// Credentials never go over plain HTTP to another machine, whatever
	// transport is given, unless the user allows the registry.
	o.transport = plainhttp.Guard(o.transport, plainhttp.Allowed())
	return o
}

// WithTransport sets the HTTP transport under auth and retries (plain
// HTTP stays refused but to localhost and the registries named in
// plainhttp.EnvAllow).
func WithTransport(t http.RoundTripper) Option {
	return func(o *options) {
		if t != nil {
			o.transport = t
		}
	}
}

// WithKeychain sets where registry credentials come from
// (default: the Docker config, as authn.DefaultKeychain reads it).
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithJobs bounds parallel blob uploads (default 4).
func WithJobs(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.jobs = n
		}
	}
}

// WithReporter shows a named progress bar per uploaded blob.
func WithReporter(r progress.Reporter) Option {
	return func(o *options) {
		if r != nil {
			o.reporter = r
		}
	}
}

// WithLog receives one line per published image.
func WithLog(w io.Writer) Option {
	return func(o *options) {
		if w != nil {
			o.log = w
		}
	}
}

// WithLayerNames names layers by digest ("node gguf") in progress and errors.
func WithLayerNames(names map[string]string) Option { return func(o *options) { o.names = names } }

// WithRetryBackoff sets the waits between attempts of one request; Steps
// is the number of attempts.
func WithRetryBackoff(b remote.Backoff) Option { return func(o *options) { o.backoff = b } }

// WithProbeTimeout bounds the probe of a registry (default 1.5 s).
func WithProbeTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.probeTimeout = d
		}
	}
}

// WithMountRecord keeps, in file, which repository of a registry received
// which blob, so a push to another repository of the same registry mounts
// the blob instead of uploading it.
func WithMountRecord(file string) Option { return func(o *options) { o.mountRecord = file } }

// WithPullFrom asks the probe's token for pull access to repos too (the
// base image's repository): its layers are mounted from there rather than
// uploaded, and the build reads it through the same transport.
func WithPullFrom(repos ...name.Repository) Option {
	return func(o *options) { o.pullFrom = append(o.pullFrom, repos...) }
}

func (o options) layerName(digest string) string {
	if n := o.names[digest]; n != "" {
		return n
	}
	return "layer"
}

// retryable says whether a failed request is worth another attempt: network
// errors (a cut upload, a reset) and the registry's temporary answers are;
// DIGEST_INVALID too, since bytes can be damaged on the way. A refused
// connection or an unknown host is not: the registry is not there. Nor is
// a TLS handshake that met a plain-HTTP server or a certificate that does
// not verify: the same answer comes again. (go-containerregistry pings a
// localhost or insecure registry over https and http at once; a retried
// https attempt held every such ping for its 300 ms fallback delay.)
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var damaged *DamagedError
	var bytesBad interface{ DamagedBytes() bool }
	var plain *plainhttp.Error
	if errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &damaged) || (errors.As(err, &bytesBad) && bytesBad.DamagedBytes()) || errors.As(err, &plain) {
		return false
	}
	var dns *net.DNSError
	if errors.As(err, &dns) || tlsWillFailAgain(err) {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.Temporary() || hasCode(terr, transport.DigestInvalidErrorCode)
	}
	return true
}

// tlsWillFailAgain is an https request that a plain-HTTP server answered,
// or a certificate that does not verify.
func tlsWillFailAgain(err error) bool {
	var record tls.RecordHeaderError
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &record) || errors.As(err, &verify) || errors.As(err, &unknown) ||
		errors.As(err, &host) || errors.As(err, &invalid) ||
		// net/http says so in words only (transport.go).
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

func hasCode(terr *transport.Error, code transport.ErrorCode) bool {
	for _, d := range terr.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}
