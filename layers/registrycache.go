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
	"github.com/comfy-image/comfy-image/layers/publish"
	"github.com/comfy-image/comfy-image/versions"
)

// registryCache prepares the registry-as-cache: the outputs the images go to (each asked whether it holds a layer's
// blob before that layer is packed), and what the images already at the
// registry references (and --cache-from) say of their layers, so a fresh
// CI runner with no lock and no cache packs and downloads only what
// changed, whether it writes to registries, OCI layouts or both.
func (b *builder) registryCache(ctx context.Context) error {
	b.known = map[string]versions.LockedLayer{}
	b.registryModels = map[string]versions.LockedModel{}
	b.listed = map[string]map[v1.Hash]bool{}
	b.seen = map[string]v1.Hash{}
	// The lock's layers are a record of what was built, never a source of
	// reuse: a lock is a file anyone can edit, and an entry naming another
	// layer's digest under this key would put that blob in the image.
	// Only the images at the push references and --cache-from (learnt
	// below) are trusted for layer keys; the local cache speaks for what
	// it packed itself.
	if err := b.learnCacheFrom(ctx); err != nil {
		return err
	}
	for _, out := range b.opts.PushTo {
		models, err := ModelsLocation(out, b.opts.ModelsRef)
		if err != nil {
			return fmt.Errorf("--models-ref: %w", err)
		}
		b.appOuts = append(b.appOuts, out)
		b.modelOuts = append(b.modelOuts, models)
		for _, loc := range []Location{out, models} {
			if loc.Kind == Registry {
				b.learn(ctx, loc.Ref)
			}
		}
	}
	return nil
}

// holds tells whether the output at loc already holds the blob d of size
// bytes, as its publisher will find: a registry repository when a manifest
// read there lists it or a HEAD finds it, an OCI layout when its blob file
// is there with that size (go-containerregistry's layout writer checks no
// more). A tarball holds nothing: all its bytes are written.
func (b *builder) holds(ctx context.Context, loc Location, d v1.Hash, size int64) bool {
	switch loc.Kind {
	case Registry:
		repo := loc.Ref.Context()
		if b.listed[repo.String()][d] {
			return true
		}
		has, err := BlobExists(ctx, repo, d, b.opts.Transports[repo.String()])
		return err == nil && has
	case OCILayout:
		return publish.LayoutHolds(loc.Path, d, size)
	}
	return false
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

// packer packs a layer into the layer cache; packed reports whether it
// was packed now (false: another build packed it meanwhile).
type packer func() (l v1.Layer, packed bool, err error)

// entriesPacker packs entries into the layer cache under key.
func (b *builder) entriesPacker(ctx context.Context, key string, entries func() ([]materialize.Entry, error)) packer {
	return func() (v1.Layer, bool, error) {
		return b.cache.Build(ctx, key, b.opts.Compression, b.layerOpts(), entries)
	}
}

// layer returns the app layer under key: from the local cache, else as a
// lazy layer when every output already holds it, else packed now (in a
// dry run: nil, to be packed).
func (b *builder) layer(ctx context.Context, key string, pack packer) (v1.Layer, plan.Action, error) {
	lazy := func() (v1.Layer, error) {
		l, _, err := pack()
		return l, err
	}
	if l, action := b.decide(ctx, key, b.appOuts, lazy); action != plan.Pack || b.dryRun {
		return l, action, nil
	}
	l, packed, err := pack()
	if !packed {
		return l, plan.ReuseCache, err // packed meanwhile by another build
	}
	return l, plan.Pack, err
}

// knownLayer is the layer recorded under key by a trusted image (at the
// push reference or --cache-from) when every output in outs holds its
// blob: a lazy layer, packed by pack only if a writer asks for its bytes.
func (b *builder) knownLayer(ctx context.Context, key string, outs []Location, pack func() (v1.Layer, error)) (v1.Layer, bool) {
	known, ok := b.known[key]
	if !ok || len(outs) == 0 {
		return nil, false
	}
	digest, err1 := v1.NewHash(known.Digest)
	diffID, err2 := v1.NewHash(known.DiffID)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	origin, ok := b.mountOrigin(ctx, outs, digest, known.Size)
	if !ok {
		return nil, false
	}
	mt := b.opts.Compression.MediaType()
	if digest == diffID {
		mt = types.OCIUncompressedLayer // model layers are stored uncompressed
	}
	layer := materialize.Lazy(materialize.Info{Digest: digest, DiffID: diffID, Size: known.Size, MediaType: mt}, known.Part, pack)
	if origin == nil {
		b.logf("%s: in every output already, not packed", known.Part)
		return layer, true
	}
	// The publisher mounts a layer from its origin (remote.MountableLayer)
	// when the origin is another repository of the destination's registry;
	// a registry that refuses the mount gets the bytes, packed and checked.
	b.logf("%s: mounted from %s, not packed", known.Part, origin)
	return &remote.MountableLayer{Layer: layer, Reference: origin.Digest(digest.String())}, true
}

// mountOrigin tells whether every output in outs holds the blob d or can
// mount it from a --cache-from repository of its registry that lists it;
// origin is that repository (nil: every output holds the blob). Only one
// origin is used, so every output that lacks the blob must be in its
// registry.
func (b *builder) mountOrigin(ctx context.Context, outs []Location, d v1.Hash, size int64) (origin *name.Repository, ok bool) {
	for _, out := range outs {
		if b.holds(ctx, out, d, size) {
			continue
		}
		if out.Kind != Registry {
			return nil, false
		}
		dest := out.Ref.Context()
		if origin != nil {
			if origin.RegistryStr() != dest.RegistryStr() {
				return nil, false
			}
			continue
		}
		from, found := b.cacheFromHolding(dest, d)
		if !found {
			return nil, false
		}
		origin = &from
	}
	return origin, true
}

// cacheFromHolding is a --cache-from repository of dest's registry, other
// than dest, whose image lists the blob d.
func (b *builder) cacheFromHolding(dest name.Repository, d v1.Hash) (name.Repository, bool) {
	for _, from := range b.cacheFrom {
		if from.RegistryStr() == dest.RegistryStr() && from.RepositoryStr() != dest.RepositoryStr() && b.listed[from.String()][d] {
			return from, true
		}
	}
	return name.Repository{}, false
}
