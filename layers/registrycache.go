package layers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/versions"
)

// registryCache prepares the registry-as-cache: the layers the lock knows,
// the repositories of the outputs (only when every output is a registry:
// an OCI layout or a tarball needs every layer's bytes), and what the
// images already at those references say of their layers, so a fresh CI
// runner with no lock and no cache packs and downloads only what changed.
func (b *builder) registryCache(ctx context.Context) error {
	b.known = map[string]versions.LockedLayer{}
	b.registryModels = map[string]versions.LockedModel{}
	b.listed = map[string]map[v1.Hash]bool{}
	b.seen = map[string]v1.Hash{}
	for _, l := range b.lock.Layers {
		if l.Key != "" {
			b.known[l.Key] = l
		}
	}
	if err := b.learnCacheFrom(ctx); err != nil {
		return err
	}
	for _, out := range b.opts.PushTo {
		if out.Kind != Registry {
			return nil
		}
	}
	for _, out := range b.opts.PushTo {
		models, err := ModelsLocation(out, b.opts.ModelsRef)
		if err != nil {
			return fmt.Errorf("--models-ref: %w", err)
		}
		if models.Kind != Registry {
			b.appRepos, b.modelRepos = nil, nil
			return nil
		}
		b.appRepos = append(b.appRepos, out.Ref.Context())
		b.modelRepos = append(b.modelRepos, models.Ref.Context())
		b.learn(ctx, out.Ref)
		b.learn(ctx, models.Ref)
	}
	return nil
}

// learn reads the keys of the layers of the image at ref, if there is one.
func (b *builder) learn(ctx context.Context, ref name.Reference) {
	img, err := remote.Image(ref, b.remoteOptions(ctx, ref.Context())...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		b.seen[ref.String()] = v1.Hash{} // nothing there: the push needs no HEAD
	}
	if err != nil {
		return // nothing there yet (or unreadable): everything is built
	}
	m, err := img.Manifest()
	if err != nil {
		return
	}
	listed := b.listed[ref.Context().String()]
	if listed == nil {
		listed = map[v1.Hash]bool{}
		b.listed[ref.Context().String()] = listed
	}
	for _, l := range m.Layers {
		listed[l.Digest] = true
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return
	}
	b.learnBaseFacts(cf)
	b.learnPythonSet(cf)
	if d, err := img.Digest(); err == nil {
		b.seen[ref.String()] = d
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return
	}
	for i, l := range m.Layers {
		a := l.Annotations
		key := a[AnnKey]
		if key == "" {
			continue
		}
		if _, ok := b.known[key]; !ok {
			b.known[key] = versions.LockedLayer{Part: plan.Part{Kind: plan.PartKind(a[AnnPart]), Name: a[AnnName]}.Label(), Key: key,
				Digest: l.Digest.String(), DiffID: cf.RootFS.DiffIDs[i].String(), Size: l.Size}
		}
		if a[AnnPart] == "model" && a[AnnSHA256] != "" {
			size, _ := strconv.ParseInt(a[AnnSize], 10, 64)
			b.registryModels[a[AnnName]] = versions.LockedModel{Source: a[AnnSource], Dest: a[AnnName], SHA256: a[AnnSHA256], Size: size}
		}
	}
}

// remoteOptions read repo through the output's probed transport when
// there is one (no second ping or token), else with the default keychain.
func (b *builder) remoteOptions(ctx context.Context, repo name.Repository) []remote.Option {
	if tr := b.opts.Transports[repo.String()]; tr != nil {
		return []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr)}
	}
	return RemoteOptions(remote.WithContext(ctx))
}

// layer returns the app layer under key: from the local cache, else as a
// layer every registry output already has, else packed now (in a dry run:
// nil, to be packed).
func (b *builder) layer(ctx context.Context, key string, entries func() ([]materialize.Entry, error)) (v1.Layer, plan.Action, error) {
	if l, action := b.decide(ctx, key, b.appRepos); action != plan.Pack || b.dryRun {
		return l, action, nil
	}
	l, packed, err := b.cache.Build(ctx, key, b.opts.Compression, b.layerOpts(), entries)
	if !packed {
		return l, plan.ReuseCache, err // packed meanwhile by another build
	}
	return l, plan.Pack, err
}

// remoteLayer is the lock's layer under key when every repository in repos
// holds its blob.
func (b *builder) remoteLayer(ctx context.Context, key string, repos []name.Repository) (v1.Layer, bool) {
	known, ok := b.known[key]
	if !ok || len(repos) == 0 {
		return nil, false
	}
	digest, err1 := v1.NewHash(known.Digest)
	diffID, err2 := v1.NewHash(known.DiffID)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	for _, repo := range repos {
		if b.listed[repo.String()][digest] {
			continue // a manifest there lists it: no need to ask
		}
		if has, err := BlobExists(ctx, repo, digest, b.opts.Transports[repo.String()]); err != nil || !has {
			return nil, false
		}
	}
	mt := b.opts.Compression.MediaType()
	if digest == diffID {
		mt = types.OCIUncompressedLayer // model layers are stored uncompressed
	}
	b.logf("%s: in the registry already, not packed", known.Part)
	return materialize.Known(materialize.Info{Digest: digest, DiffID: diffID, Size: known.Size, MediaType: mt}, known.Part), true
}
