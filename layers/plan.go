package layers

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

// Action is what a build does for one part's layer.
type Action string

// The actions of a build plan.
const (
	ReuseCache    Action = "reuse-cache"    // the layer (or model file) is in the local cache
	ReuseRegistry Action = "reuse-registry" // every registry output holds it: neither packed nor read
	Pack          Action = "pack"           // packed from its sources
	Download      Action = "download"       // a model file fetched, then laid out as a layer
)

// decide is the one decision of where an app layer comes from, taken by
// the build (builder.layer, venvPart) and by its dry run alike: the local
// cache, else the registry outputs when every one holds it, else packing.
func (b *builder) decide(ctx context.Context, key string, repos []name.Repository) (v1.Layer, Action) {
	if l, ok := b.cache.Lookup(key); ok {
		return l, ReuseCache
	}
	if l, ok := b.remoteLayer(ctx, key, repos); ok {
		return l, ReuseRegistry
	}
	return nil, Pack
}

// PlannedPart is one layer of a build plan.
type PlannedPart struct {
	Kind, Name string
	// Key is the layer's cache key ("" for a venv whose Python set is not
	// locked yet: pip chooses it).
	Key string
	// Digest and Size are known when the layer is cached, in the registry
	// or recorded by the lock ("" and 0 otherwise).
	Digest string
	Size   int64
	Action Action
	// Upload are the registry repositories the layer's blob would be
	// uploaded to (those that do not hold it yet).
	Upload []string
}

// BuildPlan is what `build --dry-run` prints: the parts the build would
// make, each with its decision, and where the images would go.
type BuildPlan struct {
	VersionID, SpecFile, Base, Models string
	// LockProblem is why the lock cannot be used as it is; the build would
	// resolve first (Resolve lists the repositories), and Parts is empty.
	LockProblem error
	Resolve     []string
	BaseLayers  int
	Parts       []PlannedPart
	// Writes are the outputs that are no registry (every layer is written).
	Writes []string
}

// PlanBuild takes every decision Build takes, with the same code, and
// carries out none: nothing is packed, fetched, uploaded or written.
func PlanBuild(ctx context.Context, spec *versions.Spec, opts BuildOptions, outs []Location) (*BuildPlan, error) {
	b, err := newBuilder(spec, opts)
	if err != nil {
		return nil, err
	}
	b.dryRun = true
	b.cache.Log = nil
	plan := &BuildPlan{VersionID: spec.VersionID, SpecFile: spec.File, Base: b.opts.Base, Models: b.opts.Models}
	for _, out := range outs {
		if out.Kind != "registry" {
			plan.Writes = append(plan.Writes, out.String())
		}
	}
	// Models the lock lacks are planned as downloads (a build pins them
	// as it fetches them); with --locked the lock must hold them.
	skipModels := b.opts.Models == "skip" || !b.opts.Locked
	if b.lock, err = resolve.ReadCovering(spec, b.opts.LockPath(spec.VersionID), skipModels); err != nil {
		if b.opts.Locked {
			return nil, fmt.Errorf("--locked: %w", err)
		}
		plan.LockProblem, plan.Resolve = err, resolve.Plan(spec, b.opts.ResolveOptions()...)
		return plan, nil
	}
	app, modelParts, err := b.parts(ctx)
	if err != nil {
		return nil, err
	}
	if baseLayers, err := b.base.Layers(); err == nil {
		plan.BaseLayers = len(baseLayers)
	}
	for _, p := range app {
		plan.Parts = append(plan.Parts, b.planned(ctx, p, outs, false))
	}
	for _, p := range modelParts {
		plan.Parts = append(plan.Parts, b.planned(ctx, p, outs, b.opts.Models == "separate"))
	}
	return plan, nil
}

// planned is the plan entry of a dry run's part.
func (b *builder) planned(ctx context.Context, p Part, outs []Location, modelsImage bool) PlannedPart {
	pp := PlannedPart{Kind: p.Kind, Name: p.Name, Key: p.Key}
	switch {
	case p.Remote:
		pp.Action = ReuseRegistry
	case p.Packed:
		pp.Action = Pack
	case p.Fetch:
		pp.Action = Download
	default:
		pp.Action = ReuseCache
	}
	if p.Layer != nil {
		if d, err := p.Layer.Digest(); err == nil {
			pp.Digest = d.String()
		}
		pp.Size, _ = p.Layer.Size()
	} else if known, ok := b.known[p.Key]; ok && p.Key != "" && pp.Action != Pack {
		pp.Digest, pp.Size = known.Digest, known.Size
	}
	if pp.Action == ReuseRegistry {
		return pp // every registry output holds it
	}
	for _, out := range outs {
		if out.Kind != "registry" {
			continue
		}
		repo := out.Ref.Context()
		if modelsImage {
			loc, err := ModelsLocation(out, b.opts.ModelsRef)
			if err != nil || loc.Kind != "registry" {
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
// download unless the model store has the locked file.
func (b *builder) plannedModelParts() []Part {
	store := models.Store{Dir: filepath.Join(b.opts.CacheDir, "models")}
	var parts []Part
	for _, m := range b.spec.Models {
		lm, ok := models.LockedFor(b.lock, m)
		_, stored := store.Has(lm.SHA256)
		p := Part{Kind: "model", Name: m.Dest(), SHA256: lm.SHA256, Fetch: !(ok && stored)}
		if ok {
			p.Key = modelLayerKey([]ModelFile{{Path: b.modelPath(m), SHA256: lm.SHA256}}, b.modTime)
		}
		parts = append(parts, p)
	}
	return parts
}

// Print writes the plan for a person.
func (p *BuildPlan) Print(w io.Writer) {
	fmt.Fprintf(w, "dry run: build %s (%s) on %s, models %s\n", p.VersionID, p.SpecFile, p.Base, p.Models)
	if p.LockProblem != nil {
		fmt.Fprintf(w, "  lock: %v; would resolve:\n", p.LockProblem)
		for _, line := range p.Resolve {
			fmt.Fprintln(w, "    "+line)
		}
		fmt.Fprintln(w, "  layers: core, one per custom node, venv, config (commits not known before the lock)")
		return
	}
	fmt.Fprintf(w, "  base: %d layers\n", p.BaseLayers)
	for _, pp := range p.Parts {
		detail := ""
		if pp.Digest != "" {
			detail = fmt.Sprintf(" %s (%s)", pp.Digest, progress.Size(pp.Size))
		}
		fmt.Fprintf(w, "  %-14s %-6s %s%s\n", pp.Action, pp.Kind, pp.Name, detail)
		for _, repo := range pp.Upload {
			fmt.Fprintf(w, "  %-14s %-6s %s to %s\n", "upload", pp.Kind, pp.Name, repo)
		}
	}
	for _, out := range p.Writes {
		fmt.Fprintf(w, "  write   %s\n", out)
	}
}

// Plan prints the plan of a build (PlanBuild); nothing is written.
func Plan(ctx context.Context, spec *versions.Spec, opts BuildOptions, outs []Location, w io.Writer) error {
	plan, err := PlanBuild(ctx, spec, opts, outs)
	if err != nil {
		return err
	}
	plan.Print(w)
	return nil
}
