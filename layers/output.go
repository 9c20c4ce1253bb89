package layers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/comfy-image/comfy-image/internal/plainhttp"
	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/layers/publish"
)

// WriteOptions are the settings of writing a build's images.
type WriteOptions struct {
	// ModelsRef overrides where the models image goes (default: the app
	// reference's tag + "-models").
	ModelsRef string
	// Jobs bounds parallel layer uploads (0: 4).
	Jobs     int
	Reporter progress.Reporter
	Log      io.Writer
	// Transport is the HTTP transport for registries (nil: default).
	Transport http.RoundTripper
	// Names label layers by digest in progress output ("node gguf").
	Names map[string]string
	// MountRecord is the file remembering which repository of a registry
	// holds which blob, for cross-repository mounts ("": none).
	MountRecord string
	// Publish are further publisher options (retry backoff, keychain...).
	Publish []publish.Option
	// MountFrom are repositories (the base image's) whose blobs the
	// registry destinations mount: the probe asks pull access to them.
	MountFrom []name.Repository
}

// ModelsLocation is where the models image of app goes: REF-models for a
// registry, TAG-models in the same OCI layout, or the same tarball.
func ModelsLocation(app Location, override string) (Location, error) {
	if override != "" {
		return ParseLocation(override)
	}
	switch app.Kind {
	case OCILayout:
		return Location{Kind: OCILayout, Path: app.Path, Tag: app.Tag + "-models"}, nil
	case Tarball:
		return app, nil
	}
	tag := "latest"
	if t, ok := app.Ref.(name.Tag); ok {
		tag = t.TagStr()
	}
	return ParseLocation(app.Ref.Context().Name() + ":" + tag + "-models")
}

// Outputs are the publishers of a build's destinations, made before the
// build so every destination can be probed before any work.
type Outputs struct {
	targets    []target
	publishers []publish.Publisher // one per destination, in order
	// early wait for the uploads EarlyUploads started.
	mu    sync.Mutex
	early []func() error
}

// target is one output: where the app image goes and where its models
// image goes (often the same publisher).
type target struct {
	app, models       publish.Publisher
	appTag, modelsTag string
}

// NewOutputs makes one publisher per destination (a registry repository,
// an OCI layout, a tarball) for outs and their models locations.
func NewOutputs(outs []Location, versionID string, o WriteOptions) (*Outputs, error) {
	opts := append([]publish.Option{publish.WithJobs(o.Jobs), publish.WithReporter(o.Reporter),
		publish.WithLog(o.Log), publish.WithTransport(o.Transport), publish.WithLayerNames(o.Names),
		publish.WithMountRecord(o.MountRecord), publish.WithPullFrom(o.MountFrom...)}, o.Publish...)
	res := &Outputs{}
	byDest := map[string]publish.Publisher{}
	publisher := func(loc Location) publish.Publisher {
		key := destination(loc)
		if p, ok := byDest[key]; ok {
			return p
		}
		var p publish.Publisher
		switch loc.Kind {
		case OCILayout:
			p = publish.NewLayout(loc.Path, opts...)
		case Tarball:
			p = publish.NewTarball(loc.Path, versionID, opts...)
		default:
			p = publish.NewRegistry(loc.Ref.Context(), opts...)
		}
		byDest[key] = p
		res.publishers = append(res.publishers, p)
		return p
	}
	for _, out := range outs {
		modelsLoc, err := ModelsLocation(out, o.ModelsRef)
		if err != nil {
			return nil, fmt.Errorf("--models-ref: %w", err)
		}
		appTag, err := tagOf(out, "latest")
		if err != nil {
			return nil, err
		}
		modelsTag, err := tagOf(modelsLoc, "latest-models")
		if err != nil {
			return nil, err
		}
		res.targets = append(res.targets, target{app: publisher(out), appTag: appTag, models: publisher(modelsLoc), modelsTag: modelsTag})
	}
	return res, nil
}

func destination(loc Location) string {
	if loc.Kind == Registry {
		return loc.Ref.Context().String()
	}
	return string(loc.Kind) + ":" + loc.Path
}

// tagOf is the tag an image gets at loc; a tarball's images are tagged
// ID:latest and ID:latest-models.
func tagOf(loc Location, tarTag string) (string, error) {
	switch loc.Kind {
	case OCILayout:
		return loc.Tag, nil
	case Tarball:
		return tarTag, nil
	}
	t, ok := loc.Ref.(name.Tag)
	if !ok {
		return "", fmt.Errorf("%s: a push needs a tag, not a digest", loc)
	}
	return t.TagStr(), nil
}

// Probe checks every destination (registry reachable, credentials
// accepted, push allowed) before any packing.
func (o *Outputs) Probe(ctx context.Context) error {
	return publish.Probe(ctx, publish.Multi(o.publishers...))
}

// Transports are the probed transports of the registry destinations, by
// repository name (BuildOptions.Transports), so the build reads what the
// registry holds without pinging it again.
func (o *Outputs) Transports() map[string]http.RoundTripper {
	out := map[string]http.RoundTripper{}
	for _, p := range o.publishers {
		if r, ok := p.(*publish.Registry); ok && r.Transport() != nil {
			out[r.Repository().String()] = r.Transport()
		}
	}
	return out
}

// Write publishes the app image (and the models image, when there is one)
// to every output, then finishes them (tarballs are written at the end).
func (o *Outputs) Write(ctx context.Context, res *Result) error {
	if err := o.WaitEarly(); err != nil {
		return err
	}
	for _, t := range o.targets {
		sawAt(t.app, t.appTag, res)
		sawAt(t.models, t.modelsTag, res)
		if _, err := t.app.Publish(ctx, res.App, t.appTag); err != nil {
			return err
		}
		if res.Models == nil {
			continue
		}
		if _, err := t.models.Publish(ctx, res.Models, t.modelsTag); err != nil {
			return err
		}
	}
	return publish.Multi(o.publishers...).Close()
}

// EarlyUploads is the BuildOptions.Early of a build writing to o: it
// uploads each blob of the models image to every registry output as soon
// as the build knows it (each model layer once digested, the config once
// the image is complete) while the app image is still being made; rep
// shows their progress (nil: the outputs' reporter). Write waits for them,
// then publishes both images as always: no tag moves before both are
// complete, and the models image's push sends only its manifest.
func (o *Outputs) EarlyUploads(ctx context.Context, rep progress.Reporter) EarlyBlobs {
	return &earlyUploads{o: o, ctx: ctx, rep: rep}
}

type earlyUploads struct {
	o   *Outputs
	ctx context.Context
	rep progress.Reporter
}

func (e *earlyUploads) registries() []*publish.Registry {
	var out []*publish.Registry
	for _, t := range e.o.targets {
		if r, ok := t.models.(*publish.Registry); ok {
			out = append(out, r)
		}
	}
	return out
}

// Known passes what the build read at the outputs to the models
// publishers, as Write does: nothing there is asked about again.
func (e *earlyUploads) Known(seen map[string]v1.Hash, listed map[string]map[v1.Hash]bool) {
	res := &Result{Seen: seen, Listed: listed}
	for _, t := range e.o.targets {
		sawAt(t.models, t.modelsTag, res)
	}
}

func (e *earlyUploads) ModelLayer(p plan.Part) {
	for _, r := range e.registries() {
		e.o.addEarly(r.StartUpload(e.ctx, []publish.Blob{{Layer: p.Layer, Label: p.Label()}}, e.rep))
	}
}

func (e *earlyUploads) ModelsImage(img v1.Image) {
	for _, t := range e.o.targets {
		if r, ok := t.models.(*publish.Registry); ok {
			e.o.addEarly(r.StartUploadBlobs(e.ctx, img, t.modelsTag, e.rep))
		}
	}
}

// WaitEarly waits for the uploads EarlyUploads started and returns
// their errors; a build that failed calls it (its context cancelled) so no
// upload outlives the command.
func (o *Outputs) WaitEarly() error {
	o.mu.Lock()
	early := o.early
	o.early = nil
	o.mu.Unlock()
	var errs []error
	for _, wait := range early {
		errs = append(errs, wait())
	}
	return errors.Join(errs...)
}

// addEarly keeps the wait of an upload started early (model layers are
// digested, and their uploads started, side by side).
func (o *Outputs) addEarly(wait func() error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.early = append(o.early, wait)
}

// sawAt passes to a registry publisher the digest the build read at its
// tag and the blobs the manifests there list, so neither an unchanged
// image nor a blob it lists is asked about again.
func sawAt(p publish.Publisher, tag string, res *Result) {
	if r, ok := p.(*publish.Registry); ok {
		if d, ok := res.Seen[r.Repository().Tag(tag).String()]; ok {
			r.Saw(tag, d)
		}
		r.Holds(res.Listed[r.Repository().String()])
	}
}

// Write writes the app image (and the models image, when there is one) to
// every output location.
func Write(ctx context.Context, res *Result, outs []Location, versionID string, o WriteOptions) error {
	w, err := NewOutputs(outs, versionID, o)
	if err != nil {
		return err
	}
	return w.Write(ctx, res)
}

// blobCheckers keeps one authenticated transport per repository, so
// asking a registry about many blobs pings it (and fetches a token) once.
var blobCheckers sync.Map // repository name -> http.RoundTripper

// BlobExists asks a registry whether it has a blob (HEAD /v2/<repo>/blobs/<digest>).
func BlobExists(ctx context.Context, repo name.Repository, d v1.Hash, tr http.RoundTripper) (bool, error) {
	rt, err := blobChecker(ctx, repo, tr)
	if err != nil {
		return false, err
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return false, err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("HEAD %s: %s", u, resp.Status)
}

func blobChecker(ctx context.Context, repo name.Repository, tr http.RoundTripper) (http.RoundTripper, error) {
	if tr == nil {
		if rt, ok := blobCheckers.Load(repo.String()); ok {
			return rt.(http.RoundTripper), nil
		}
	}
	base := tr
	if base == nil {
		base = plainhttp.Guard(remote.DefaultTransport, plainhttp.Allowed())
	}
	auth, err := authn.DefaultKeychain.Resolve(repo.Registry)
	if err != nil {
		return nil, err
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	if tr == nil {
		blobCheckers.Store(repo.String(), rt)
	}
	return rt, nil
}
