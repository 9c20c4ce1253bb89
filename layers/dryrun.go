package layers

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/internal/reqfile"
	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/realize/checkout"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

// decide is the one decision of where a layer comes from, taken by the
// build (builder.layer, venvPart, remoteModelParts) and by its dry run
// alike: the local cache, else a lazy layer when every output in outs
// already holds it (pack makes its bytes if a writer asks after all),
// else packing.
func (b *builder) decide(ctx context.Context, key string, outs []Location, pack func() (v1.Layer, error)) (v1.Layer, plan.Action) {
	if l, ok := b.cache.Lookup(key); ok {
		return l, plan.ReuseCache
	}
	if l, ok := b.knownLayer(ctx, key, outs, pack); ok {
		return l, plan.ReuseRegistry
	}
	return nil, plan.Pack
}

// PlanBuild takes every decision Build takes, with the same code, and
// carries out none: nothing is packed, fetched, uploaded or written.
func PlanBuild(ctx context.Context, spec *versions.Spec, opts BuildOptions, outs []Location) (*plan.BuildPlan, error) {
	if len(opts.PushTo) == 0 {
		opts.PushTo = outs
	}
	b, err := newBuilder(spec, opts)
	if err != nil {
		return nil, err
	}
	b.dryRun = true
	b.cache.Log = nil
	bp := &plan.BuildPlan{VersionID: spec.VersionID, SpecFile: spec.File, Base: b.opts.Base, Models: b.opts.Models}
	for _, out := range outs {
		if out.Kind != Registry {
			bp.Writes = append(bp.Writes, out.String())
		}
	}
	if b.lock, bp.LockChanges, err = b.planLock(ctx); err != nil {
		if b.opts.Locked {
			return nil, fmt.Errorf("--locked: %w", err)
		}
		bp.LockProblem, bp.Resolve = err, resolve.Plan(spec, b.opts.ResolveOptions()...)
		return bp, nil
	}
	stopLearning := b.startLearning(ctx)
	app, modelParts, err := b.parts(ctx)
	if err != nil {
		stopLearning(err)
		return nil, err
	}
	if baseLayers, err := b.base.Layers(); err == nil {
		bp.BaseLayers = len(baseLayers)
	}
	for _, p := range app {
		if p.Kind == plan.Venv && len(b.dry.assumed) > 0 {
			bp.VenvAssumes = b.dry.assumed
		}
		bp.Parts = append(bp.Parts, b.planned(ctx, p, false))
	}
	for _, p := range modelParts {
		bp.Parts = append(bp.Parts, b.planned(ctx, p, b.opts.Models == plan.Separate))
	}
	return bp, nil
}

// planLock is the lock the build would use. Locked or offline, the lock
// file as it is (models it lacks are planned as downloads unless
// --locked). Online, the resolution the build makes, read-only: each ref
// listed afresh (one listing per repository, in parallel; nothing fetched
// or written), so the plan names the commits the build then uses; lines
// are the changes against the lock file.
func (b *builder) planLock(ctx context.Context) (*versions.Lock, []string, error) {
	file := b.opts.LockPath(b.spec.VersionID)
	if b.opts.Locked || b.opts.Offline {
		l, err := resolve.ReadCovering(b.spec, file, b.opts.Models == plan.Skip || !b.opts.Locked)
		return l, nil, err
	}
	old, _ := versions.ReadLock(file) // a damaged lock is resolved again, as the build does
	b.dry.old = old
	l, changes, err := resolve.Resolve(ctx, b.spec, old, append(b.opts.ResolveOptions(),
		resolve.WithReadOnly(true), resolve.WithLockName(file),
		resolve.WithoutModels(b.opts.Models == plan.Skip), resolve.WithLookupEnv(b.opts.LookupEnv))...)
	if err == nil && changes.First {
		return l, []string{"none yet: the build writes " + file}, nil
	}
	return l, changes.Lines, err
}

// dryState is what a dry run learns beside its parts.
type dryState struct {
	// old is the lock file's lock (online).
	old *versions.Lock
	// assumed are the repositories whose requirement lines at the new
	// commit the plan took to be those at the old one: the mirror lacks
	// the commit, and a dry run fetches nothing.
	assumed []string
}

// commitSource reads a commit's requirement files from its mirror. A dry
// run fetches nothing: a commit the mirror lacks is read at the commit the
// lock file held for the same owner (the venv is planned as if its
// requirement lines did not change, and the plan says so).
func (b *builder) commitSource(ctx context.Context, git *gitcache.Cache, owner, repo, commit string) (reqfile.Source, error) {
	if b.dryRun {
		if r, err := git.Open(repo); err == nil {
			if _, err := r.CommitObject(plumbing.NewHash(commit)); err == nil {
				return realize.CommitSource(r, commit), nil
			}
			if was := b.dry.oldCommit(owner); was != "" {
				if _, err := r.CommitObject(plumbing.NewHash(was)); err == nil {
					b.dry.assumed = append(b.dry.assumed, fmt.Sprintf("%s at %s (read at %s)", owner, commit, was))
					return realize.CommitSource(r, was), nil
				}
			}
		}
		return nil, fmt.Errorf("%s: the mirror of %s lacks commit %s, and a dry run fetches nothing", owner, repourl.Redact(repo), commit)
	}
	r, err := checkout.OpenMirror(ctx, git, repo, commit)
	if err != nil {
		return nil, err
	}
	return realize.CommitSource(r, commit), nil
}

// oldCommit is the commit the lock file held for owner ("ComfyUI" or
// "node NAME"), "" when none.
func (d dryState) oldCommit(owner string) string {
	name, isNode := strings.CutPrefix(owner, "node ")
	if !isNode {
		name = "" // the core
	}
	return d.old.CommitOf(name)
}

// planned is the plan entry of a dry run's part: its decision, and the
// outputs that lack its blob (registries it would be uploaded to, layouts
// and tarballs it would be written to).
func (b *builder) planned(ctx context.Context, p plan.Part, modelsImage bool) plan.PlannedPart {
	pp := plan.PlannedPart{Kind: p.Kind, Name: p.Name, Key: p.Key, Action: p.Action, Fetch: p.Fetch}
	if p.Layer != nil {
		if d, err := p.Layer.Digest(); err == nil {
			pp.Digest = d.String()
		}
		pp.Size, _ = p.Layer.Size()
	} else if known, ok := b.known[p.Key]; ok && p.Key != "" && pp.Action != plan.Pack {
		pp.Digest, pp.Size = known.Digest, known.Size
	}
	if pp.Action == plan.ReuseRegistry {
		return pp // every output holds it
	}
	outs := b.appOuts
	if modelsImage {
		outs = b.modelOuts
	}
	d, err := v1.NewHash(pp.Digest) // none yet for a layer to pack: no output has it
	for _, out := range outs {
		if err == nil && b.holds(ctx, out, d, pp.Size) {
			continue
		}
		if out.Kind == Registry {
			pp.Upload = append(pp.Upload, out.Ref.Context().String())
		} else {
			pp.Write = append(pp.Write, out.String())
		}
	}
	return pp
}

// plannedModelParts are a dry run's model parts: one per model, to
// download unless the model store has the locked file; a file:// model to
// be read in place and digested, unless the layer cache knows it as it is.
func (b *builder) plannedModelParts() []plan.Part {
	f := models.ForSpec(b.spec, models.Setup{CacheDir: b.opts.CacheDir, Offline: b.opts.Offline, Log: b.opts.Log, LookupEnv: b.opts.LookupEnv, Progress: progress.Discard()})
	var parts []plan.Part
	for _, m := range b.spec.Models {
		lm, ok := models.LockedFor(b.lock, m)
		_, stored := f.Store.Has(lm.SHA256)
		p := plan.Part{Kind: plan.Model, Name: m.Dest(), SHA256: lm.SHA256, Action: plan.ReuseCache}
		if src, sha, local := models.LocalModel(f, m, b.lock); local {
			// A file:// model is read where it lies (never downloaded):
			// only to be digested, unless the layer cache knows it as it is.
			file := materialize.ModelFile{File: src, Path: b.modelPath(m), SHA256: sha, InPlace: true}
			if _, known := materialize.KnownModelFile(b.cache.Dir, file, b.modTime); !known {
				p.Action = plan.Pack
			}
		} else if !(ok && stored) {
			p.Action = plan.Download
		}
		if ok {
			p.Key = materialize.ModelLayerKey([]materialize.ModelFile{{Path: b.modelPath(m), SHA256: lm.SHA256}}, b.modTime)
		}
		parts = append(parts, p)
	}
	return parts
}

// Plan prints the plan of a build (PlanBuild); nothing is written.
func Plan(ctx context.Context, spec *versions.Spec, opts BuildOptions, outs []Location, w io.Writer) error {
	bp, err := PlanBuild(ctx, spec, opts, outs)
	if err != nil {
		return err
	}
	bp.Print(w)
	return nil
}
