package publish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/comfy-image/comfy-image/internal/parallel"
	"github.com/comfy-image/comfy-image/internal/plainhttp"
	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Registry publishes to one repository of a registry through one
// remote.Pusher and one probed transport.
type Registry struct {
	repo name.Repository
	o    options

	once     sync.Once
	probeErr error
	source   string            // where the credentials came from, for errors
	tr       http.RoundTripper // probed: auth done, retries inside
	pusher   *remote.Pusher
	mounts   *mountRecord

	mu    sync.Mutex
	seen  map[string]v1.Hash // by tag: digests read there by this run
	holds map[v1.Hash]bool   // blobs a manifest read there lists
	slots chan struct{}      // bounds the uploads StartUpload runs
}

// NewRegistry publishes to repo.
func NewRegistry(repo name.Repository, opts ...Option) *Registry {
	o := makeOptions(opts...)
	return &Registry{repo: repo, o: o, mounts: &mountRecord{file: o.mountRecord}}
}

// ProbeError is a destination that cannot be pushed to: unreachable, or
// the credentials were refused.
type ProbeError struct {
	Registry string
	// Credentials says where the credentials came from: a Docker config
	// file, or anonymous.
	Credentials string
	Err         error
}

func (e *ProbeError) Error() string {
	return fmt.Sprintf("registry %s (credentials: %s): %v", e.Registry, e.Credentials, e.Err)
}

func (e *ProbeError) Unwrap() error { return e.Err }

// Probe checks, once, that the registry answers /v2/, accepts the
// credentials and grants a push scope for the repository (a token server
// tells; a basic-auth registry is asked with one authenticated request).
func (r *Registry) Probe(ctx context.Context) error {
	r.once.Do(func() { r.probeErr = r.probe(ctx) })
	return r.probeErr
}

func (r *Registry) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.probeTimeout)
	defer cancel()
	fail := func(err error) error {
		return &ProbeError{Registry: r.repo.RegistryStr(), Credentials: r.source, Err: explain(err)}
	}
	auth, err := authn.Resolve(ctx, r.o.keychain, r.repo)
	r.source = credentialSource(auth, r.o.keychain)
	if err != nil {
		return fail(err)
	}
	scopes := []string{r.repo.Scope(transport.PushScope)}
	for _, repo := range append(r.mounts.sources(r.repo), r.o.pullFrom...) {
		if repo.RegistryStr() == r.repo.RegistryStr() && repo.String() != r.repo.String() {
			scopes = append(scopes, repo.Scope(transport.PullScope))
		}
	}
	seen := &challengeSeen{inner: r.o.transport}
	retrying := transport.NewRetry(seen, transport.WithRetryBackoff(r.o.backoff),
		transport.WithRetryPredicate(retryable), transport.WithRetryStatusCodes(retryStatusCodes...))
	tr, err := transport.NewWithContext(ctx, r.repo.Registry, auth, retrying, scopes)
	if err != nil {
		return fail(err)
	}
	switch {
	case seen.basic && auth == authn.Anonymous:
		return fail(errors.New("the registry asks for a login and none was found (docker login or podman login)"))
	case seen.basic:
		// The ping carried no credentials: ask once with them.
		if err := checkBasic(ctx, r.repo, tr); err != nil {
			return fail(err)
		}
	}
	r.tr = tr
	r.pusher, err = remote.NewPusher(r.remoteOptions()...)
	if err != nil {
		return fail(err)
	}
	return nil
}

var retryStatusCodes = []int{http.StatusRequestTimeout, http.StatusTooManyRequests,
	http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// remoteOptions give every remote call the probed transport (a
// transport.Wrapper, so remote pings no more) and our retry policy for
// blob uploads.
func (r *Registry) remoteOptions(extra ...remote.Option) []remote.Option {
	return append([]remote.Option{remote.WithTransport(r.tr), remote.WithJobs(r.o.jobs),
		remote.WithRetryBackoff(r.o.backoff), remote.WithRetryPredicate(retryable),
		remote.WithRetryStatusCodes(retryStatusCodes...)}, extra...)
}

// Publish pushes img as repo:tag: nothing but a manifest HEAD when the tag
// already holds img; otherwise every blob the registry lacks (mounted from
// another repository of the registry when one is known to hold it), then
// the manifest.
func (r *Registry) Publish(ctx context.Context, img v1.Image, tag string) (name.Reference, error) {
	if err := r.Probe(ctx); err != nil {
		return nil, err
	}
	ref := r.repo.Tag(tag)
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	done := r.repo.Digest(digest.String())
	at, known := r.sawAt(tag)
	if !known {
		desc, err := remote.Head(ref, r.remoteOptions(remote.WithContext(ctx))...)
		var terr *transport.Error
		switch {
		case err == nil:
			at = desc.Digest
		case !(errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound):
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	}
	if at == digest {
		fmt.Fprintf(r.o.log, "%s@%s: already in the registry\n", ref, digest)
		return done, r.remember(img)
	}
	if err := r.uploadBlobs(ctx, img); err != nil {
		return nil, err
	}
	if err := r.pusher.Put(ctx, ref, img); err != nil {
		return nil, fmt.Errorf("push manifest %s: %w", ref, err)
	}
	fmt.Fprintf(r.o.log, "wrote %s@%s\n", ref, digest)
	return done, r.remember(img)
}

// StartUploadBlobs starts uploading the blobs of img the repository lacks
// (layers and config, as Publish would) without its manifest, none when
// the build read img at tag: see StartUpload. A build calls it for the models image while the app image
// is still being made: the long upload of the model bytes overlaps the
// packing, and no tag moves before both images are complete.
func (r *Registry) StartUploadBlobs(ctx context.Context, img v1.Image, tag string, rep progress.Reporter) (wait func() error) {
	if at, known := r.sawAt(tag); known {
		if d, err := img.Digest(); err == nil && d == at {
			return func() error { return nil } // the tag holds img: every blob is there
		}
	}
	todo, err := r.blobsToUpload(img)
	if err != nil {
		return func() error { return err }
	}
	blobs := make([]Blob, len(todo))
	for i, b := range todo {
		blobs[i] = Blob{Layer: b.l, Label: b.label}
	}
	return r.StartUpload(ctx, blobs, rep)
}

// Blob is a blob to upload on its own (StartUpload), named for the
// progress display ("": by the publisher's layer names).
type Blob struct {
	Layer v1.Layer
	Label string
}

// StartUpload starts uploading the blobs the repository lacks, without a
// manifest, and returns the function that waits for them. They count as
// held at once, so a Publish or another StartUpload asks no more about
// them; one that fails is held no longer (and the failure comes out of
// wait, which a build's Write calls before any Publish). At most the
// publisher's jobs uploads started this way run at once, across calls.
// The probe and the naming of the blobs happen before it returns; only the
// uploads run on. rep shows their progress (nil: the publisher's).
func (r *Registry) StartUpload(ctx context.Context, blobs []Blob, rep progress.Reporter) (wait func() error) {
	if err := r.Probe(ctx); err != nil {
		return func() error { return err }
	}
	var todo []blob
	held := map[v1.Hash]bool{}
	for _, b := range blobs {
		d, err := b.Layer.Digest()
		if err != nil {
			return func() error { return err }
		}
		if held[d] || r.listed(d) {
			continue
		}
		held[d] = true
		label := b.Label
		if label == "" {
			label = r.o.layerName(d.String())
		}
		todo = append(todo, blob{b.Layer, d, label})
	}
	r.Holds(held)
	if rep == nil {
		rep = r.o.reporter
	}
	r.mu.Lock()
	if r.slots == nil {
		r.slots = make(chan struct{}, max(1, r.o.jobs))
	}
	slots := r.slots
	r.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		errs := make([]error, len(todo))
		err := parallel.Do(ctx, len(todo), len(todo), func(ctx context.Context, i int) error {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return errs[i]
			}
			defer func() { <-slots }()
			errs[i] = r.upload(ctx, todo[i].l, todo[i].d, todo[i].label, rep)
			return errs[i]
		})
		if err != nil {
			r.mu.Lock()
			for i, b := range todo {
				if errs[i] != nil || ctx.Err() != nil {
					delete(r.holds, b.d)
				}
			}
			r.mu.Unlock()
		}
		done <- err
	}()
	return func() error { return <-done }
}

// blob is one blob to upload, with its name for the progress display.
type blob struct {
	l     v1.Layer
	d     v1.Hash
	label string
}

// uploadBlobs uploads the layers and the config in parallel, each blob
// once; the first failure cancels the others.
func (r *Registry) uploadBlobs(ctx context.Context, img v1.Image) error {
	todo, err := r.blobsToUpload(img)
	if err != nil {
		return err
	}
	return r.uploadAll(ctx, todo, nil)
}

// blobsToUpload are the layers and the config of img, each once, but
// those a manifest in the repository lists (they are there).
func (r *Registry) blobsToUpload(img v1.Image) ([]blob, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	config, err := partial.ConfigLayer(img)
	if err != nil {
		return nil, err
	}
	var todo []blob
	seen := map[v1.Hash]bool{}
	for i, l := range append(layers, config) {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		if seen[d] || r.listed(d) {
			continue
		}
		seen[d] = true
		label := r.o.layerName(d.String())
		if i == len(layers) {
			label = "config"
		}
		todo = append(todo, blob{l, d, label})
	}
	return todo, nil
}

func (r *Registry) uploadAll(ctx context.Context, todo []blob, rep progress.Reporter) error {
	if rep == nil {
		rep = r.o.reporter
	}
	return parallel.Do(ctx, len(todo), r.o.jobs, func(ctx context.Context, i int) error {
		return r.upload(ctx, todo[i].l, todo[i].d, todo[i].label, rep)
	})
}

func (r *Registry) upload(ctx context.Context, l v1.Layer, d v1.Hash, label string, rep progress.Reporter) error {
	tl := &trackedLayer{Layer: l, reporter: rep, label: label + " " + shortDigest(d)}
	var up v1.Layer = tl
	if from, ok := r.mountFrom(l, d); ok {
		up = &remote.MountableLayer{Layer: tl, Reference: from.Digest(d.String())}
	}
	err := r.pusher.Upload(ctx, r.repo, up)
	tl.done(err)
	if err != nil {
		return &LayerError{Layer: label, Digest: d, Registry: r.repo.RegistryStr(), Err: err}
	}
	return nil
}

// mountFrom is another repository of r's registry that holds the blob:
// the layer's origin (a base layer read from the registry), else the
// mount record's hint. A base layer is thus mounted, never downloaded to
// be uploaded to the registry it came from.
func (r *Registry) mountFrom(l v1.Layer, d v1.Hash) (name.Repository, bool) {
	if ml, ok := l.(*remote.MountableLayer); ok {
		origin := ml.Reference.Context()
		if origin.RegistryStr() == r.repo.RegistryStr() && origin.RepositoryStr() != r.repo.RepositoryStr() {
			return origin, true
		}
	}
	return r.mounts.lookup(r.repo, d)
}

// Saw tells r that the build read digest at tag during this run (the
// zero Hash: the tag was absent), so Publish does not ask again with a
// manifest HEAD: the same digest sends no request, another is pushed. A
// tag moved by someone else in between is pushed over, as it would be a
// moment after a HEAD.
func (r *Registry) Saw(tag string, digest v1.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]v1.Hash{}
	}
	r.seen[tag] = digest
}

// Holds tells r that the repository holds these blobs (a manifest the
// build read there lists them), so Publish does not ask about them.
func (r *Registry) Holds(digests map[v1.Hash]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holds == nil {
		r.holds = map[v1.Hash]bool{}
	}
	for d, ok := range digests {
		r.holds[d] = r.holds[d] || ok
	}
}

func (r *Registry) listed(d v1.Hash) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holds[d]
}

func (r *Registry) sawAt(tag string) (v1.Hash, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.seen[tag]
	return d, ok
}

func (r *Registry) remember(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var digests []string
	for _, l := range layers {
		if d, err := l.Digest(); err == nil {
			digests = append(digests, d.String())
		}
	}
	if d, err := img.ConfigName(); err == nil {
		digests = append(digests, d.String())
	}
	return r.mounts.add(r.repo, digests)
}

// Repository is where r publishes.
func (r *Registry) Repository() name.Repository { return r.repo }

// Transport is the probed transport (auth done, retries inside), for
// reading the repository with the same connection and token; nil before a
// successful Probe.
func (r *Registry) Transport() http.RoundTripper { return r.tr }

// Close has nothing to finish for a registry.
func (r *Registry) Close() error { return nil }

// LayerError is a blob that could not be uploaded after every retry.
type LayerError struct {
	Layer    string // "node gguf", "config"
	Digest   v1.Hash
	Registry string
	Err      error
}

func (e *LayerError) Error() string {
	return fmt.Sprintf("upload %s (%s) to %s: %v", e.Layer, e.Digest, e.Registry, e.Err)
}

func (e *LayerError) Unwrap() error { return e.Err }

// Damaged says the bytes we hold for the blob (a cached layer) are not
// its digest's: they hashed wrong while uploading, or the registry
// answered DIGEST_INVALID to every attempt. Making the layer again helps;
// retrying does not.
func (e *LayerError) Damaged() bool {
	var terr *transport.Error
	var damaged *DamagedError
	var bytesBad interface{ DamagedBytes() bool }
	return errors.As(e.Err, &damaged) || (errors.As(e.Err, &bytesBad) && bytesBad.DamagedBytes()) ||
		(errors.As(e.Err, &terr) && hasCode(terr, transport.DigestInvalidErrorCode))
}

// challengeSeen notes whether the registry's ping asked for basic auth:
// then the ping proves nothing about the credentials.
type challengeSeen struct {
	inner http.RoundTripper
	basic bool
}

func (c *challengeSeen) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.inner.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && req.URL.Path == "/v2/" &&
		strings.HasPrefix(strings.ToLower(resp.Header.Get("WWW-Authenticate")), "basic") {
		c.basic = true
	}
	return resp, err
}

func checkBasic(ctx context.Context, repo name.Repository, tr http.RoundTripper) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, repo.Scheme()+"://"+repo.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return transport.CheckError(resp, http.StatusOK)
}

// explain adds what a user should check to the errors a probe meets.
func explain(err error) error {
	var terr *transport.Error
	var plain *plainhttp.Error
	switch {
	case errors.As(err, &plain):
		return fmt.Errorf("%v (every attempt: %w)", plain, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("not reachable (connection refused): %w", err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer in time: %w", err)
	case errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden):
		return fmt.Errorf("credentials refused (push needs a login: docker login or podman login): %w", err)
	}
	return err
}

// credentialSource names where authn.DefaultKeychain took credentials
// from, in its order: the Docker config, $REGISTRY_AUTH_FILE, podman's
// auth.json. It never reads or prints the secret itself.
func credentialSource(auth authn.Authenticator, kc authn.Keychain) string {
	if auth == authn.Anonymous {
		return "anonymous"
	}
	if kc != authn.DefaultKeychain {
		return "the given keychain"
	}
	home, _ := os.UserHomeDir()
	var candidates []string
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "config.json"))
	} else if home != "" {
		candidates = append(candidates, filepath.Join(home, ".docker", "config.json"))
	}
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		candidates = append(candidates, f)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, "containers", "auth.json"))
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		candidates = append(candidates, filepath.Join(d, "containers", "auth.json"))
	} else if home != "" {
		candidates = append(candidates, filepath.Join(home, ".config", "containers", "auth.json"))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return "the default keychain"
}

func shortDigest(d v1.Hash) string {
	if len(d.Hex) > 12 {
		return d.Hex[:12]
	}
	return d.Hex
}
