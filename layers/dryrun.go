package layers

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

// decide is the one decision of where an app layer comes from, taken by
// the build (builder.layer, venvPart) and by its dry run alike: the local
// cache, else the registry outputs when every one holds it, else packing.
func (b *builder) decide(ctx context.Context, key string, repos []name.Repository) (v1.Layer, plan.Action) {
	if l, ok := b.cache.Lookup(key); ok {
		return l, plan.ReuseCache
	}
	if l, ok := b.remoteLayer(ctx, key, repos); ok {
		return l, plan.ReuseRegistry
	}
	return nil, plan.Pack
}

// PlanBuild takes every decision Build takes, with the same code, and
// carries out none: nothing is packed, fetched, uploaded or written.
func PlanBuild(ctx context.Context, spec *versions.Spec, opts BuildOptions, outs []Location) (*plan.BuildPlan, error) {
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
	// Models the lock lacks are planned as downloads (a build pins them
	// as it fetches them); with --locked the lock must hold them.
	skipModels := b.opts.Models == plan.Skip || !b.opts.Locked
	if b.lock, _, err = realize.ReadCovering(spec, b.opts.Options, skipModels); err != nil {
		if b.opts.Locked {
			return nil, fmt.Errorf("--locked: %w", err)
		}
		bp.LockProblem, bp.Resolve = err, realize.PlanRepos(spec, b.opts.Options)
		return bp, nil
	}
	app, modelParts, err := b.parts(ctx)
	if err != nil {
		return nil, err
	}
	if baseLayers, err := b.base.Layers(); err == nil {
		bp.BaseLayers = len(baseLayers)
	}
	for _, p := range app {
		bp.Parts = append(bp.Parts, b.planned(ctx, p, outs, false))
	}
	for _, p := range modelParts {
		bp.Parts = append(bp.Parts, b.planned(ctx, p, outs, b.opts.Models == plan.Separate))
	}
	return bp, nil
}

// planned is the plan entry of a dry run's part.
func (b *builder) planned(ctx context.Context, p plan.Part, outs []Location, modelsImage bool) plan.PlannedPart {
	pp := plan.PlannedPart{Kind: p.Kind, Name: p.Name, Key: p.Key, Action: p.Action}
	if p.Layer != nil {
		if d, err := p.Layer.Digest(); err == nil {
			pp.Digest = d.String()
		}
		pp.Size, _ = p.Layer.Size()
	} else if known, ok := b.known[p.Key]; ok && p.Key != "" && pp.Action != plan.Pack {
		pp.Digest, pp.Size = known.Digest, known.Size
	}
	if pp.Action == plan.ReuseRegistry {
		return pp // every registry output holds it
	}
	for _, out := range outs {
		if out.Kind != Registry {
			continue
		}
		repo := out.Ref.Context()
		if modelsImage {
			loc, err := ModelsLocation(out, b.opts.ModelsRef)
			if err != nil || loc.Kind != Registry {
				continue
			}
			repo = loc.Ref.Context()
		}
		if !b.holds(ctx, repo, pp.Digest) {
			pp.Upload = append(pp.Upload, repo.String())
		}
	}
	return pp
}

// holds tells whether repo has the blob digest, as the publisher asks
// before an upload ("": a layer still to pack, which it has not).
func (b *builder) holds(ctx context.Context, repo name.Repository, digest string) bool {
	h, err := v1.NewHash(digest)
	if err != nil {
		return false
	}
	if b.listed[repo.String()][h] {
		return true
	}
	has, err := BlobExists(ctx, repo, h, b.opts.Transports[repo.String()])
	return err == nil && has
}

// plannedModelParts are a dry run's model parts: one per model, to
// download unless the model store has the locked file; a file:// model to
// be read in place and digested, unless the layer cache knows it as it is.
func (b *builder) plannedModelParts() []plan.Part {
	f := realize.NewFetcher(b.spec, b.opts.Options, b.opts.LookupEnv, progress.Discard(), 0)
	var parts []plan.Part
	for _, m := range b.spec.Models {
		lm, ok := realize.LockedModelFor(b.lock, m)
		_, stored := f.Store.Has(lm.SHA256)
		p := plan.Part{Kind: plan.Model, Name: m.Dest(), SHA256: lm.SHA256, Action: plan.ReuseCache}
		if src, sha, local := realize.LocalModel(f, m, b.lock); local {
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
