package layers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/comfy-image/comfy-image/internal/parallel"
	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/internal/streams"
	"github.com/comfy-image/comfy-image/layers/assemble"
	"github.com/comfy-image/comfy-image/layers/materialize"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/layers/worker"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/realize/checkout"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

// Our annotation and label keys (see package assemble).
const (
	AnnPart        = assemble.AnnPart
	AnnName        = assemble.AnnName
	AnnRepo        = assemble.AnnRepo
	AnnCommit      = assemble.AnnCommit
	AnnSHA256      = assemble.AnnSHA256
	AnnSource      = assemble.AnnSource
	AnnSpecDigest  = assemble.AnnSpecDigest
	AnnNodePrefix  = assemble.AnnNodePrefix
	AnnModelPfx    = assemble.AnnModelPfx
	AnnKey         = assemble.AnnKey
	AnnSize        = assemble.AnnSize
	AnnModelsImage = assemble.AnnModelsImage
)

// Root is where a version lives inside the app image; models are at /models.
const (
	Root      = "opt/comfy"
	ModelsDir = "/models"
	// layoutVersion changes when the way parts are laid out changes, so
	// cached layers of an older layout are not reused.
	layoutVersion = "2" // 2: ComfyUI/models is a link (layers/modelslayout.go)
)

// BuildOptions are the settings of `comfy-image build`.
type BuildOptions struct {
	realize.Options
	// Base is the base image location (registry ref, oci:DIR[:TAG], tar:FILE).
	Base string
	// Models is separate (default), bake or skip.
	Models plan.ModelsMode
	// WheelsDir: pip gets --no-index --find-links DIR.
	WheelsDir   string
	Compression materialize.Compression
	// MaxLayers bounds base plus our layers (0: 120; containerd refuses >127).
	MaxLayers int
	Locked    bool
	// HostPython runs pip to fetch wheels for the base's Python ("": python3).
	HostPython string
	LookupEnv  func(string) (string, bool)
	Getenv     func(string) string
	// PushTo are the outputs (registries, OCI layouts, tarballs): a layer
	// whose digest is known (from an image at a registry output or
	// --cache-from; never from the lock alone) and which every output already holds is neither packed
	// nor fetched (the registry is the cache of a fresh CI runner).
	PushTo    []Location
	ModelsRef string
	Reporter  progress.Reporter
	Out       io.Writer

	// Transports are probed registry transports by repository name
	// (Outputs.Transports): the registry cache reads through them, and a
	// registry base in the same registry too (the probe asked a pull
	// scope for it: WriteOptions.MountFrom).
	Transports map[string]http.RoundTripper
	// CacheFrom are further images (registry references) whose layer
	// keys and base facts are trusted, as those at the push reference.
	CacheFrom []string
	// Early, when set, hears of the blobs of a separate models image as
	// soon as each is known (Outputs.EarlyUploads uploads them while the
	// app image is still being made). A dry run tells it nothing.
	Early EarlyBlobs
}

// EarlyBlobs hears of a models image's blobs before the build ends, in
// this order: Known once, then each model layer, then the whole image.
type EarlyBlobs interface {
	// Known is what the build read at the registry outputs: the digest
	// at each reference and the blobs their manifests list (as
	// Result.Seen and Result.Listed), so no blob there is asked about.
	Known(seen map[string]v1.Hash, listed map[string]map[v1.Hash]bool)
	// ModelLayer is a model part whose layer is digested.
	ModelLayer(p plan.Part)
	// ModelsImage is the models image, complete.
	ModelsImage(img v1.Image)
}

// Result is what a build made.
type Result struct {
	App    v1.Image
	Models v1.Image    // nil unless --models separate and the spec has models
	Parts  []plan.Part // app parts, then model parts
	Lock   *versions.Lock
	// Seen are the manifest digests the build read at registry
	// references, by reference: publishing the same digest there again
	// needs no request.
	Seen map[string]v1.Hash
	// Listed are the blobs the manifests read there list, by repository.
	Listed map[string]map[v1.Hash]bool
}

type builder struct {
	// known are the layers trusted images list, by key; appOuts and
	// modelOuts are where the images go (asked whether they hold a layer).
	known          map[string]versions.LockedLayer
	registryModels map[string]versions.LockedModel // by destination
	appOuts        []Location
	modelOuts      []Location
	spec           *versions.Spec
	opts           BuildOptions
	lock           *versions.Lock
	cache          materialize.Cache
	modTime        time.Time
	base           v1.Image
	modelsDigest   string // of the models image, labelled on the app image
	modelsImg      v1.Image
	info           BaseInfo
	// dryRun takes every decision of a build and carries out none: no
	// layer is packed, no wheel or model fetched (PlanBuild).
	dryRun bool
	dry    dryState // what a dry run learns beside its parts

	// listed are the blobs the manifests at the output references list,
	// by repository: a registry holds every blob its manifests list.
	listed map[string]map[v1.Hash]bool
	// cacheFrom are the repositories of the --cache-from images (and of
	// their models images): a blob one lists is mounted from there into
	// an output of the same registry rather than packed and uploaded.
	cacheFrom []name.Repository
	// seen are the manifest digests read at the output references (and
	// --cache-from), by reference: a push of the same digest is a no-op.
	seen map[string]v1.Hash
	// baseFacts are the base facts recorded by the images read above, by
	// base digest.
	baseFacts map[string]baseFacts
	// pythonSets are the Python sets those images record, by target.
	pythonSets map[string]pythonSet
	// learnt is the background reading of the outputs and the base.
	learnt *learning
}

func (o *BuildOptions) defaults() {
	if o.Models == "" {
		o.Models = plan.Separate
	}
	if o.Compression == "" {
		o.Compression = materialize.Gzip
	}
	if o.MaxLayers <= 0 {
		o.MaxLayers = 120
	}
	if o.HostPython == "" {
		o.HostPython = "python3"
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Build makes the app image (base + core + nodes + venv + config) and the
// models image of a version. Unchanged parts reuse their cached layers.
func Build(ctx context.Context, spec *versions.Spec, opts BuildOptions) (*Result, error) {
	b, err := newBuilder(spec, opts)
	if err != nil {
		return nil, err
	}
	// What the outputs hold and the base's facts do not depend on the
	// lock: they are read while it is resolved (in a first build the base
	// read is the longest step before the venv).
	stopLearning := b.startLearning(ctx)
	if b.lock, _, err = resolve.InFile(ctx, spec, b.opts.LockPath(spec.VersionID), append(b.opts.ResolveOptions(), resolve.WithLocked(b.opts.Locked), resolve.WithoutModels(b.opts.Models == plan.Skip), resolve.WithLookupEnv(b.opts.LookupEnv))...); err != nil {
		stopLearning(err)
		return nil, err
	}
	parts, modelParts, err := b.parts(ctx)
	if err != nil {
		stopLearning(err)
		return nil, err
	}
	opts = b.opts
	res := &Result{Lock: b.lock}
	if opts.Models == plan.Bake {
		parts = append(parts, modelParts...)
	}
	if opts.Models == plan.Separate && len(modelParts) > 0 {
		if b.modelsImg == nil {
			if err := b.finishModelsImage(modelParts); err != nil {
				return nil, err
			}
		}
		res.Models = b.modelsImg
	}
	if res.App, err = b.appImage(parts); err != nil {
		return nil, err
	}
	res.Parts, res.Seen, res.Listed = parts, b.seen, b.listed
	if opts.Models == plan.Separate {
		res.Parts = append(res.Parts, modelParts...)
	}
	b.recordLayers(res.Parts)
	// With --locked the lock is the truth and is never written.
	if !opts.Locked {
		if err := versions.WriteLock(opts.LockPath(spec.VersionID), b.lock); err != nil {
			return nil, err
		}
	}
	b.warnHuge(res.Parts)
	return res, nil
}

// newBuilder checks the options and sets their defaults.
func newBuilder(spec *versions.Spec, opts BuildOptions) (*builder, error) {
	opts.defaults()
	// The models and the app are made side by side: one log, whole lines.
	opts.Log = streams.Locked(opts.Log)
	var err error
	if opts.Models, err = plan.ParseModelsMode(string(opts.Models)); err != nil {
		return nil, err
	}
	b := &builder{spec: spec, opts: opts, cache: materialize.Cache{Dir: filepath.Join(opts.CacheDir, "layers"), Log: opts.Log}}
	if b.modTime, err = materialize.ModTimeFromEnv(opts.Getenv); err != nil {
		return nil, err
	}
	return b, nil
}

// parts decides every layer of the lock b.lock: the app parts, then the
// model parts. A build packs what must be packed; a dry run (b.dryRun)
// takes the same decisions and packs, fetches and downloads nothing.
func (b *builder) parts(ctx context.Context) (app, models []plan.Part, err error) {
	b.startLearning(ctx)
	if err := b.learnt.outputs.wait(ctx); err != nil {
		return nil, nil, err
	}
	if b.opts.Models == plan.Separate && !b.dryRun {
		if b.opts.Early != nil {
			b.opts.Early.Known(b.seen, b.listed)
		}
		return b.partsSideBySide(ctx)
	}
	// appParts waits for the base and its facts as the side-by-side
	// build's app side does: the same errors come first in both.
	if app, err = b.appParts(ctx); err != nil {
		return nil, nil, err
	}
	slots := b.opts.MaxLayers
	if b.opts.Models == plan.Bake {
		baseLayers, err := b.base.Layers()
		if err != nil {
			return nil, nil, err
		}
		slots -= len(baseLayers) + len(app)
	}
	if models, err = b.modelParts(ctx, slots); err != nil {
		return nil, nil, err
	}
	return app, models, nil
}

func (b *builder) logf(format string, args ...any) {
	fmt.Fprintf(b.opts.Log, format+"\n", args...)
}

func (b *builder) layerOpts() materialize.TarOptions {
	return materialize.TarOptions{ModTime: b.modTime}
}

// keyOf digests the things every app layer depends on besides its content.
func (b *builder) keyOf(parts ...string) string {
	return materialize.Key(append([]string{layoutVersion, string(b.opts.Compression), b.modTime.String()}, parts...)...)
}

// appParts builds (or reuses) the core, node, venv and config layers.
// The core and the nodes need only the base's layer count: they are made
// while the base's facts, which the venv needs, may still be read.
func (b *builder) appParts(ctx context.Context) ([]plan.Part, error) {
	if err := b.learnt.base.wait(ctx); err != nil {
		return nil, err
	}
	git := checkout.NewGitCache(b.opts.CacheDir, b.opts.Offline, b.opts.Log)
	parts, err := b.repoParts(ctx, git)
	if err != nil {
		return nil, err
	}
	if err := b.learnt.facts.wait(ctx); err != nil {
		return nil, err
	}
	venv, err := b.venvPart(ctx, git)
	if err != nil {
		return nil, err
	}
	config, err := b.configPart(ctx)
	if err != nil {
		return nil, err
	}
	return append(parts, venv, config), nil
}

// repoEntries lists a commit's files under prefix (plus extra entries):
// the tree a realize checks out, submodules included unless left out.
func (b *builder) repoEntries(ctx context.Context, git *gitcache.Cache, repo, commit, prefix string, node versions.Node) ([]materialize.Entry, error) {
	r, err := checkout.OpenMirror(ctx, git, repo, commit)
	if err != nil {
		return nil, err
	}
	files, err := checkout.CommitFiles(r, commit, checkout.TreeOptions(ctx, git, repo, node)...)
	if err != nil {
		return nil, err
	}
	entries := make([]materialize.Entry, 0, len(files))
	for _, f := range files {
		e := materialize.Entry{Path: path.Join(prefix, f.Path), Mode: 0o644, Size: f.Size, Open: f.Open, Link: f.Link, Dir: f.Dir}
		if f.Executable || f.Dir {
			e.Mode = 0o755
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// treeKey names the tree variant in layer keys: a node with and without
// its submodules or LFS objects are different layers.
func treeKey(node versions.Node) string {
	return fmt.Sprintf("tree=submodules:%v,lfs:%v", node.WantsSubmodules(), node.LFS)
}

func (b *builder) repoPart(ctx context.Context, git *gitcache.Cache, kind plan.PartKind, name, repo string, locked versions.LockedRepo, node versions.Node) (plan.Part, error) {
	prefix := path.Join(Root, "ComfyUI")
	if kind == plan.Node {
		prefix = path.Join(Root, "custom_nodes", name)
	}
	key := b.keyOf(string(kind), name, locked.Commit, treeKey(node))
	layer, action, err := b.layer(ctx, key, b.entriesPacker(ctx, key, func() ([]materialize.Entry, error) {
		es, err := b.repoEntries(ctx, git, repo, locked.Commit, prefix, node)
		if err != nil {
			return nil, err
		}
		if kind == plan.Node {
			es = append(es, nodeLink(name))
		} else if err := checkCustomNodesDir(es, prefix, locked.Commit); err != nil {
			return nil, err
		} else {
			es = layCoreModels(es)
		}
		return es, nil
	}))
	if err != nil {
		return plan.Part{}, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	return plan.Part{
		Kind: kind, Name: name, Repo: locked.Repo, Commit: locked.Commit, Key: key, Action: action, Layer: layer,
		Fetch:       b.fetches(action, git, mirrorWant{url: repo, shown: locked.Repo, commit: locked.Commit}),
		Annotations: map[string]string{AnnPart: string(kind), AnnName: name, AnnRepo: locked.Repo, AnnCommit: locked.Commit},
		History:     fmt.Sprintf("comfy-image: %s %s at %s", kind, name, locked.Commit),
	}, nil
}

// mirrorWant is a commit a part is packed from: url is fetched, shown
// is how the lock records the repository.
type mirrorWant struct{ url, shown, commit string }

// fetches are the repositories a dry run's part to pack must fetch first:
// those whose mirror in the cache lacks the commit (nil in a build, and
// for a part not packed).
func (b *builder) fetches(action plan.Action, git *gitcache.Cache, wants ...mirrorWant) []string {
	if !b.dryRun || action != plan.Pack {
		return nil
	}
	var out []string
	for _, w := range wants {
		if _, ok, err := git.Peek(w.url, "", w.commit); !ok || err != nil {
			out = append(out, w.shown)
		}
	}
	return out
}

// CoreError is a core commit the image cannot be built on (bad input).
type CoreError struct{ Commit, Problem string }

func (e *CoreError) Error() string { return fmt.Sprintf("core commit %s: %s", e.Commit, e.Problem) }

// BadInput marks the error as the input's fault (exit code 2).
func (e *CoreError) BadInput() bool { return true }

// checkCustomNodesDir refuses a core whose custom_nodes is a link or a
// file, as realize does: every node's link is put below it, so through a
// link they would land wherever it points.
func checkCustomNodesDir(es []materialize.Entry, prefix, commit string) error {
	dir := path.Join(prefix, "custom_nodes")
	for _, e := range es {
		if e.Path == dir {
			kind := "file"
			if e.Link != "" {
				kind = "symlink"
			}
			return &CoreError{Commit: commit, Problem: fmt.Sprintf("custom_nodes is a %s, not a folder; refusing to put node links through it", kind)}
		}
	}
	return nil
}

// nodeLink is ComfyUI/custom_nodes/<name> -> ../../custom_nodes/<name>,
// in the node's own layer so adding a node changes one layer.
func nodeLink(name string) materialize.Entry {
	return materialize.Entry{Path: path.Join(Root, "ComfyUI", "custom_nodes", name), Link: path.Join("..", "..", "custom_nodes", name)}
}

// nodeParts makes one layer per node, or, when the layer budget is short,
// groups nodes by a hash of their name so unchanged groups keep digests.
// repoParts makes the core's part and the nodes' side by side. Each part
// is given ctx, not a group's context: a lazy layer keeps the context it
// was made with, to pack later, and a group's ends when it returns. The
// error is the core's if it has one, else the nodes' (each failing node
// named, in the spec's order): the same message whatever finished first.
func (b *builder) repoParts(ctx context.Context, git *gitcache.Cache) ([]plan.Part, error) {
	var core plan.Part
	var nodes []plan.Part
	var coreErr, nodesErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		core, coreErr = b.repoPart(ctx, git, plan.Core, "ComfyUI", b.spec.Comfy.Repo, b.lock.Comfy, versions.Node{})
	})
	wg.Go(func() { nodes, nodesErr = b.nodeParts(ctx, git) })
	wg.Wait()
	if err := cmp.Or(coreErr, nodesErr); err != nil {
		return nil, err
	}
	return append([]plan.Part{core}, nodes...), nil
}

func (b *builder) nodeParts(ctx context.Context, git *gitcache.Cache) ([]plan.Part, error) {
	baseLayers, err := b.base.Layers()
	if err != nil {
		return nil, err
	}
	modelLayers := 0
	if b.opts.Models == plan.Bake && len(b.spec.Models) > 0 {
		modelLayers = 1 // at least one (shared) layer for the baked models
	}
	slots := b.opts.MaxLayers - len(baseLayers) - 3 - modelLayers // core, venv, config
	nodes := b.lock.CustomNodes
	if len(nodes) <= slots {
		parts := make([]plan.Part, len(nodes))
		err := parallel.Each(ctx, len(nodes), parallel.AppPacks, func(_ context.Context, i int) (err error) {
			n := nodes[i]
			parts[i], err = b.repoPart(ctx, git, plan.Node, n.Name, checkout.NodeRepo(b.spec.CustomNodes[i], n), n.LockedRepo, b.spec.CustomNodes[i])
			return err
		})
		return parts, err
	}
	if slots < 1 {
		return nil, fmt.Errorf("layer budget: the base has %d layers; with --max-layers %d there is no room for the custom nodes", len(baseLayers), b.opts.MaxLayers)
	}
	b.logf("layer budget: %d nodes grouped into %d layers (--max-layers %d, base %d layers)", len(nodes), slots, b.opts.MaxLayers, len(baseLayers))
	groups := make([][]int, slots)
	for i, n := range nodes {
		h := fnv.New32a()
		h.Write([]byte(n.Name))
		g := int(h.Sum32() % uint32(slots))
		groups[g] = append(groups[g], i)
	}
	parts := make([]plan.Part, len(groups))
	err = parallel.Each(ctx, len(groups), parallel.AppPacks, func(_ context.Context, g int) (err error) {
		if len(groups[g]) > 0 {
			parts[g], err = b.groupPart(ctx, git, g, groups[g])
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(parts, func(p plan.Part) bool { return p.Kind == "" }), nil
}

func (b *builder) groupPart(ctx context.Context, git *gitcache.Cache, g int, members []int) (plan.Part, error) {
	var names, keyParts []string
	ann := map[string]string{AnnPart: "nodes"}
	for _, i := range members {
		n := b.lock.CustomNodes[i]
		names = append(names, n.Name)
		keyParts = append(keyParts, n.Name, n.Commit, treeKey(b.spec.CustomNodes[i]))
		ann[AnnNodePrefix+n.Name] = n.Repo + "@" + n.Commit
	}
	key := b.keyOf(append([]string{"nodes"}, keyParts...)...)
	layer, action, err := b.layer(ctx, key, b.entriesPacker(ctx, key, func() ([]materialize.Entry, error) {
		var all []materialize.Entry
		for _, i := range members {
			n := b.lock.CustomNodes[i]
			es, err := b.repoEntries(ctx, git, checkout.NodeRepo(b.spec.CustomNodes[i], n), n.Commit, path.Join(Root, "custom_nodes", n.Name), b.spec.CustomNodes[i])
			if err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
			all = append(append(all, es...), nodeLink(n.Name))
		}
		return all, nil
	}))
	if err != nil {
		return plan.Part{}, err
	}
	ann[AnnName] = strings.Join(names, ",")
	var wants []mirrorWant
	for _, i := range members {
		n := b.lock.CustomNodes[i]
		wants = append(wants, mirrorWant{url: checkout.NodeRepo(b.spec.CustomNodes[i], n), shown: n.Repo, commit: n.Commit})
	}
	return plan.Part{Kind: plan.Nodes, Name: fmt.Sprintf("group %d: %s", g, strings.Join(names, ", ")), Key: key, Action: action, Fetch: b.fetches(action, git, wants...), Layer: layer,
		Annotations: ann, History: "comfy-image: nodes " + strings.Join(names, ", ")}, nil
}

// requirements reads ComfyUI's and each node's requirements.txt (or
// pyproject.toml dependencies) from the mirrors (no checkout needed) plus
// the spec's python.requirements, and records each source's lines in the
// lock (see requirementRecords).
func (b *builder) requirements(ctx context.Context, git *gitcache.Cache) ([]pyenv.Requirements, error) {
	var reqs []pyenv.Requirements
	var recs []versions.LockedRequirements
	for _, src := range b.requirementSources() {
		q, rec, found, err := b.loadSource(ctx, git, src)
		if err != nil {
			return nil, err
		}
		if found {
			reqs = append(reqs, q)
		}
		recs = append(recs, rec)
	}
	q, rec, found, err := b.specRequirements()
	if err != nil {
		return nil, err
	}
	if found {
		reqs, recs = append(reqs, q), append(recs, rec)
	}
	b.lock.Python.ImageRequirements, b.lock.Python.Overrides = recs, appliedOverrides(recs)
	return reqs, nil
}

// constraints hold the torch family of the spec, or of the base image
// when the venv reuses its site packages.
func (b *builder) constraints() []string {
	var installed map[string]string
	if b.spec.Python.SystemSitePackages {
		installed = b.info.Torch
	}
	return pyenv.TorchConstraints(b.spec.Python.Requirements, installed)
}

func (b *builder) targetID() string {
	t := b.info.Target
	id := fmt.Sprintf("%s cp%s %s glibc%s system-site=%v", t.Python, t.Version, t.Arch, t.Glibc, b.spec.Python.SystemSitePackages)
	if b.spec.Python.SystemSitePackages {
		// The venv holds what the base lacks: another base set, another venv.
		id += " base-packages=" + basePackagesID(b.info.Packages)
	}
	return id
}

func (b *builder) venvKey(pkgs []versions.LockedPackage) string {
	keyParts := []string{"venv", b.targetID()}
	for _, p := range pkgs {
		keyParts = append(keyParts, p.Wheel, p.SHA256)
	}
	if pip := b.venvPip(); pip != nil {
		keyParts = append(keyParts, "pip from the base", pip.Wheel, pip.SHA256)
	}
	return b.keyOf(keyParts...)
}

// lockedImageSet is the lock's set for the base's Python when it was
// resolved from the same inputs as now (nil otherwise; empty, not nil, for
// a resolved set without packages), and the requirements when they had to
// be read. With --locked a set that is missing, was resolved from other
// inputs or does not cover every requirement is an error naming why.
//
// Only what moved is read: nothing when the commits did not move; with
// the lock's per-source records, the requirements of the sources whose
// commit moved; without them (older locks), every source's.
func (b *builder) lockedImageSet(ctx context.Context, git *gitcache.Cache) ([]versions.LockedPackage, []pyenv.Requirements, error) {
	py, target := &b.lock.Python, b.targetID()
	// The recorded inputs digest, not the packages, tells a resolved set:
	// a version without Python requirements resolves to an empty one.
	resolved := py.ImageTarget == target && py.ImageInputs != ""
	sources := resolve.SourcesDigest(b.lock, b.spec, target)
	current := resolved && py.ImageSources == sources
	var reqs []pyenv.Requirements
	recs := py.ImageRequirements
	switch {
	case current:
	case resolved && len(py.ImageRequirements) > 0:
		var read int
		var err error
		if recs, read, err = b.requirementRecords(ctx, git); err != nil {
			return nil, nil, err
		}
		b.logf("venv: requirements read again from %d of %d repositories (the others' commits did not move)", read, 1+len(b.lock.CustomNodes))
		if current = resolve.RecordsDigest(recs, b.spec, target) == py.ImageInputs; current {
			// The same lines from moved commits.
			py.ImageSources, py.ImageRequirements, py.Overrides = sources, recs, appliedOverrides(recs)
		}
	case resolved || b.opts.Locked:
		var err error
		if reqs, err = b.requirements(ctx, git); err != nil {
			return nil, nil, err
		}
		recs = py.ImageRequirements
		if current = resolved && resolve.InputsMatch(reqs, b.spec, target, py.ImageInputs); current {
			// The same lines (from moved commits, or digested as an older
			// lock did): digested as the records now in the lock are.
			py.ImageSources, py.ImageInputs = sources, resolve.RecordsDigest(recs, b.spec, target)
		}
	}
	if b.opts.Locked {
		file := b.opts.LockPath(b.spec.VersionID)
		switch {
		case !resolved && hasRequirements(reqs):
			return nil, nil, fmt.Errorf("--locked: %s holds no Python set for the base's Python (%s); run `comfy-image build` without --locked once", file, target)
		case resolved && !current:
			return nil, nil, fmt.Errorf("--locked: the Python set for %s in %s was resolved from other inputs (requirements of the locked commits or the spec's python section); run without --locked to resolve it again", target, file)
		}
		if current {
			if err := resolve.CheckRecordsCoverage(py.ImagePackages, recs, b.spec.Python.SystemSitePackages); err != nil {
				return nil, nil, fmt.Errorf("--locked: %s: %w", file, err)
			}
		}
	}
	if !current {
		return nil, reqs, nil
	}
	if py.ImagePackages == nil {
		return []versions.LockedPackage{}, reqs, nil
	}
	return py.ImagePackages, reqs, nil
}

func hasRequirements(reqs []pyenv.Requirements) bool {
	for _, q := range reqs {
		if len(pyenv.RequirementNames(strings.Join(q.Lines, "\n"))) > 0 {
			return true
		}
	}
	return false
}

func (b *builder) venvPart(ctx context.Context, git *gitcache.Cache) (plan.Part, error) {
	restore := b.adoptPythonSet()
	locked, reqs, err := b.lockedImageSet(ctx, git)
	if err != nil {
		return plan.Part{}, err
	}
	// A locked set whose layer is cached, or in every output, needs no
	// requirements, no pip and no wheels (unless a writer asks for the
	// lazy layer's bytes after all: then exactly the locked wheels).
	// locked != nil: a resolved empty set counts too.
	if locked != nil {
		key := b.venvKey(locked)
		lazy := func() (v1.Layer, error) {
			wheels, err := b.downloadWheels(ctx, nil, locked)
			if err != nil {
				return nil, err
			}
			l, _, err := b.venvPacker(ctx, key, wheels)()
			return l, err
		}
		if layer, action := b.decide(ctx, key, b.appOuts, lazy); action != plan.Pack {
			return b.venvPartOf(key, layer, action, len(locked)), nil
		}
	}
	if b.dryRun {
		// The key of a set still to resolve is known once pip chose it.
		key := ""
		if locked != nil {
			key = b.venvKey(locked)
		}
		return b.venvPartOf(key, nil, plan.Pack, len(locked)), nil
	}
	if restore != nil {
		// An image's set only finds its layer: a venv to pack is resolved
		// as without a lock.
		restore()
		locked = nil
	}
	if reqs == nil {
		if reqs, err = b.requirements(ctx, git); err != nil {
			return plan.Part{}, err
		}
	}
	wheels, err := b.downloadWheels(ctx, reqs, locked)
	if err != nil {
		return plan.Part{}, err
	}
	pkgs := make([]versions.LockedPackage, len(wheels))
	for i, w := range wheels {
		pkgs[i] = w.LockedPackage
	}
	inputs, err := resolve.InputsDigest(reqs, b.spec, b.targetID())
	if err != nil {
		return plan.Part{}, err
	}
	b.lock.Python.ImageTarget, b.lock.Python.ImagePackages = b.targetID(), pkgs
	b.lock.Python.ImageInputs, b.lock.Python.ImageSources = inputs, resolve.SourcesDigest(b.lock, b.spec, b.targetID())
	key := b.venvKey(pkgs)
	layer, action, err := b.layer(ctx, key, b.venvPacker(ctx, key, wheels))
	if err != nil {
		return plan.Part{}, fmt.Errorf("venv: %w", err)
	}
	return b.venvPartOf(key, layer, action, len(wheels)), nil
}

// downloadWheels fetches the wheels of the locked set, or has pip resolve
// reqs when there is none.
func (b *builder) downloadWheels(ctx context.Context, reqs []pyenv.Requirements, locked []versions.LockedPackage) ([]pyenv.Wheel, error) {
	if err := pyenv.CheckWheelsDir(b.opts.WheelsDir, locked); err != nil {
		return nil, err
	}
	opts := pyenv.Options{WheelsDir: b.opts.WheelsDir, Offline: b.opts.Offline, IndexURLs: b.spec.Python.IndexURLs, Pre: b.spec.Python.Pre, CacheDir: filepath.Join(b.opts.CacheDir, "pip"), Log: b.opts.Log}
	if b.spec.Python.SystemSitePackages {
		opts.BasePackages = append([]pyenv.BasePackage{}, b.info.Packages...)
	}
	wheels, err := pyenv.DownloadWheels(ctx, b.opts.HostPython, b.info.Target, reqs, b.constraints(), locked, opts, filepath.Join(b.opts.CacheDir, "wheels"))
	if err != nil {
		return nil, fmt.Errorf("venv: %w", err)
	}
	return wheels, nil
}

// venvPacker packs the venv of wheels (and the base's pip when the venv
// needs it) into the layer cache under key.
func (b *builder) venvPacker(ctx context.Context, key string, wheels []pyenv.Wheel) packer {
	return func() (v1.Layer, bool, error) {
		var tree *materialize.VenvTree
		l, packed, err := b.cache.Build(ctx, key, b.opts.Compression, b.layerOpts(), func() ([]materialize.Entry, error) {
			all := wheels
			if pip := b.venvPip(); pip != nil {
				w, err := b.pipWheelFile(ctx, *pip)
				if err != nil {
					return nil, err
				}
				all = append(append([]pyenv.Wheel{}, wheels...), w)
			}
			var err error
			tree, err = materialize.BuildVenvTree(path.Join(Root, ".venv"), b.info.Target, b.spec.Python.SystemSitePackages, all)
			if err != nil {
				return nil, err
			}
			return tree.Entries, nil
		})
		if tree != nil {
			tree.Close()
		}
		return l, packed, err
	}
}

func (b *builder) venvPartOf(key string, layer v1.Layer, action plan.Action, n int) plan.Part {
	return plan.Part{Kind: plan.Venv, Name: fmt.Sprintf("%d packages for python %s", n, b.info.Version), Key: key, Action: action, Layer: layer,
		Annotations: map[string]string{AnnPart: "venv", AnnName: fmt.Sprintf("%d packages", n)},
		History:     fmt.Sprintf("comfy-image: venv (%d packages, python %s)", n, b.info.Version)}
}

func (b *builder) configPart(ctx context.Context) (plan.Part, error) {
	script, entry, manifest := worker.Paths(Root)
	files := []materialize.Entry{
		materialize.BytesEntry(path.Join(Root, "extra_model_paths.yaml"), 0o644, realize.ExtraModelPaths(b.spec, ModelsDir, yamlOptions()...)),
		materialize.BytesEntry(path.Join(Root, "comfy.env"), 0o644, realize.EnvFile(b.spec, b.opts.LookupEnv)),
		materialize.BytesEntry(entry, 0o755, worker.EntryScript),
		materialize.BytesEntry(script, 0o644, worker.Script),
		materialize.BytesEntry(manifest, 0o644, worker.NewManifest(b.spec).JSON()),
	}
	var keyParts []string
	for _, f := range files {
		rc, _ := f.Open()
		data, _ := io.ReadAll(rc)
		keyParts = append(keyParts, f.Path, string(data))
	}
	key := b.keyOf(append([]string{"config"}, keyParts...)...)
	layer, action, err := b.layer(ctx, key, b.entriesPacker(ctx, key, func() ([]materialize.Entry, error) { return files, nil }))
	if err != nil {
		return plan.Part{}, fmt.Errorf("config: %w", err)
	}
	return plan.Part{Kind: plan.Config, Name: "extra_model_paths.yaml, comfy.env, entrypoint.sh, worker.py, comfy-image.json", Key: key, Action: action, Layer: layer,
		Annotations: map[string]string{AnnPart: "config"}, History: "comfy-image: config"}, nil
}

// modelParts fetches every model (in parallel) and makes its layer:
// <subdir>/<file> for the models image, models/<subdir>/<file> to bake.
// slots is how many layers the models may take; when there are more files,
// the largest keep their own layers and the small rest share one.
func (b *builder) modelParts(ctx context.Context, slots int) ([]plan.Part, error) {
	if b.opts.Models == plan.Skip || len(b.spec.Models) == 0 {
		return nil, nil
	}
	f := models.ForSpec(b.spec, models.Setup{CacheDir: b.opts.CacheDir, Offline: b.opts.Offline, Log: b.opts.Log, LookupEnv: b.opts.LookupEnv, Progress: b.opts.Reporter})
	if parts, ok := b.remoteModelParts(ctx, f, slots); ok {
		return parts, nil
	}
	if b.dryRun {
		return b.plannedModelParts(), nil
	}
	n := len(b.spec.Models)
	results := make([]versions.LockedModel, n)
	files := make([]materialize.ModelFile, n)
	read := make([]bool, n) // read in place to be digested now
	errs := make([]error, n)
	// When every model gets its own layer, each layer is made as soon as
	// its model is digested, and Early hears of it (its upload starts
	// while the other models are still read).
	var early []plan.Part
	if b.opts.Early != nil && b.opts.Models == plan.Separate && n <= slots {
		early = make([]plan.Part, n)
	}
	_ = parallel.Each(ctx, n, parallel.Downloads, func(ctx context.Context, i int) error {
		m := b.spec.Models[i]
		if src, sha, ok := models.LocalModel(f, m, b.lock); ok {
			results[i], files[i], read[i], errs[i] = b.localModel(ctx, f, m, src, sha)
		} else {
			observe := materialize.ModelLayerObserver(b.cache.Dir, b.modelPath(m), b.modTime, f.Store.BlobPath)
			results[i], errs[i] = models.FetchLockedObserved(ctx, f, m, b.lock, observe)
			files[i] = materialize.ModelFile{File: f.Store.BlobPath(results[i].SHA256), Path: b.modelPath(m), SHA256: results[i].SHA256}
		}
		if early != nil && errs[i] == nil {
			if early[i], errs[i] = b.modelPart(files, read, []int{i}, results); errs[i] == nil {
				b.opts.Early.ModelLayer(early[i])
			}
		}
		return nil
	})
	f.Progress.Wait()
	models.MergeLocked(b.spec, b.lock, results, errs)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if early != nil {
		return early, nil // the groups of groupModels: one per model, in order
	}
	if slots < 1 {
		return nil, fmt.Errorf("layer budget: no room for the models with --max-layers %d; use --models separate or raise it", b.opts.MaxLayers)
	}
	groups := groupModels(results, slots)
	parts := make([]plan.Part, len(groups))
	err := parallel.Do(ctx, len(groups), parallel.Packs, func(_ context.Context, g int) (err error) {
		parts[g], err = b.modelPart(files, read, groups[g], results)
		return err
	})
	if err != nil {
		return nil, err
	}
	return parts, nil
}

// openBase reads the base image's manifest and config.
func (b *builder) openBase(ctx context.Context) error {
	baseLoc, err := ParseLocation(b.opts.Base)
	if err != nil {
		return fmt.Errorf("--base: %w", err)
	}
	if b.base, err = ReadImage(baseLoc, b.baseRemoteOptions(ctx, baseLoc)...); err != nil {
		return fmt.Errorf("--base: %w", err)
	}
	if baseLoc.Kind == Registry && b.opts.CacheDir != "" && !b.dryRun { // a dry run writes nothing
		b.base = withBlobCache(b.base, BaseBlobsDir(b.opts.CacheDir))
	}
	return nil
}

// readBaseFacts learns the base's facts (readBaseInfo).
func (b *builder) readBaseFacts(ctx context.Context) (err error) {
	if b.info, err = b.readBaseInfo(ctx); err != nil {
		return fmt.Errorf("--base %s: %w", b.opts.Base, err)
	}
	b.logf("base %s: python %s (%s), glibc %s, %s", b.opts.Base, b.info.Version, b.info.Python, b.info.Glibc, b.info.Arch)
	return nil
}

// learning is the reading, in the background, of what the outputs hold
// (registryCache), then of the base image (its manifest and config), then
// of the base's facts: none needs the lock, so Build starts it before
// resolving, and each part waits only for the step it needs (the core
// and the nodes for the base's layer count, the models image for its
// platform, the venv for its Python).
type learning struct {
	outputs, base, facts step
}

// step is one background step: done is closed once err is set.
type step struct {
	done chan struct{}
	err  error
}

// wait is the step's error once it is done, or the context's cause if
// that ends first.
func (s *step) wait(ctx context.Context) error {
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// startLearning starts the learning once (a dry run's parts start it
// there) and returns the stop a failed build calls: it ends the
// learning's context and waits for it, so nothing is left running
// behind the error. A build that goes on keeps the context alive: the
// base's lazy layers are read with it later.
func (b *builder) startLearning(ctx context.Context) (stop func(error)) {
	if b.learnt != nil {
		return func(error) {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	l := &learning{}
	steps := []struct {
		*step
		run func() error
	}{
		{&l.outputs, func() error { return b.registryCache(ctx) }},
		{&l.base, func() error { return b.openBase(ctx) }},
		{&l.facts, func() error { return b.readBaseFacts(ctx) }},
	}
	for _, s := range steps {
		s.done = make(chan struct{})
	}
	b.learnt = l
	go func() {
		var err error
		for _, s := range steps {
			if err == nil && ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			if err == nil {
				err = s.run()
			}
			s.err = err // a step after a failed one fails with it
			close(s.done)
		}
	}()
	return func(err error) {
		cancel(err)
		<-l.facts.done
	}
}

// partsSideBySide makes the parts of a build with a separate models image:
// the models (fetched or read, and digested) while the base is read and
// the app parts are made, since neither depends on the other. The models
// image is then made as soon as the base's platform is known, and given to
// OnModelsImage: in a first build, reading and uploading the model bytes
// is the longest work, and it no longer waits for the app's. The first
// failure stops the other side.
func (b *builder) partsSideBySide(ctx context.Context) (app, models []plan.Part, err error) {
	// Not parallel.Do: its context ends when it returns, and the lazy
	// layers made on both sides keep theirs to pack later, when a writer
	// asks for their bytes. sides ends only when one side fails.
	sides, fail := context.WithCancelCause(ctx)
	var g errgroup.Group
	g.Go(func() error {
		parts, err := b.modelParts(sides, b.opts.MaxLayers)
		if err != nil || len(parts) == 0 {
			models = parts
			return failSides(fail, err)
		}
		if err := b.learnt.base.wait(sides); err != nil {
			return failSides(fail, err)
		}
		models = parts
		return failSides(fail, b.finishModelsImage(parts))
	})
	g.Go(func() error {
		var err error
		app, err = b.appParts(sides)
		return failSides(fail, err)
	})
	if err := g.Wait(); err != nil {
		// The first failure, not the other side's "context canceled"
		// that it caused, whichever returned first.
		return nil, nil, cmp.Or(context.Cause(sides), err)
	}
	return app, models, nil
}

// failSides ends the sides' context with err when there is one, so the other
// side stops early, and returns err.
func failSides(fail context.CancelCauseFunc, err error) error {
	if err != nil {
		fail(err)
	}
	return err
}

// finishModelsImage makes the models image of the model parts (the app
// image labels its digest) and hands it to OnModelsImage.
func (b *builder) finishModelsImage(parts []plan.Part) error {
	img, err := b.modelsImage(parts)
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	b.modelsImg, b.modelsDigest = img, d.String()
	if b.opts.Early != nil {
		b.opts.Early.ModelsImage(img)
	}
	return nil
}

// groupModels gives each model its own layer when they fit in slots;
// otherwise the slots-1 largest keep theirs and the rest share the last.
func groupModels(models []versions.LockedModel, slots int) [][]int {
	order := make([]int, len(models))
	for i := range order {
		order[i] = i
	}
	if len(models) <= slots {
		groups := make([][]int, len(models))
		for i := range models {
			groups[i] = []int{i}
		}
		return groups
	}
	sort.SliceStable(order, func(a, b int) bool { return models[order[a]].Size > models[order[b]].Size })
	var groups [][]int
	for _, i := range order[:slots-1] {
		groups = append(groups, []int{i})
	}
	rest := append([]int(nil), order[slots-1:]...)
	sort.Ints(rest)
	return append(groups, rest)
}

// localModel is a file:// model, read where it lies and never copied into
// the model store: one read gives its sha256 and its layer's digest, and
// none is needed when the layer cache knows both for the file as it is
// (its stamp). A file whose bytes are not the pinned ones is refused.
func (b *builder) localModel(ctx context.Context, f *models.Fetcher, m versions.Model, src, sha string) (lm versions.LockedModel, file materialize.ModelFile, read bool, err error) {
	file = materialize.ModelFile{File: src, Path: b.modelPath(m), SHA256: sha, InPlace: true}
	if size, ok := materialize.KnownModelFile(b.cache.Dir, file, b.modTime); ok {
		return models.LocalLockedModel(m, sha, size), file, false, nil
	}
	digest := materialize.NewModelLayerDigest(file.Path, b.modTime)
	lm, local, err := models.ReadModelInPlace(ctx, f, m, b.lock, digest.Observe)
	if err != nil {
		return lm, file, true, err
	}
	file.File, file.SHA256 = local.Path, lm.SHA256
	return lm, file, true, digest.Remember(b.cache.Dir, file, local.Stamp)
}

// modelPart is the layer of the models members (one, or a group): packed
// when a member was read in place to be digested now, else from the cache.
func (b *builder) modelPart(all []materialize.ModelFile, read []bool, members []int, results []versions.LockedModel) (plan.Part, error) {
	var files []materialize.ModelFile
	var names []string
	ann := map[string]string{AnnPart: "model"}
	action := plan.ReuseCache
	for _, i := range members {
		m, r := b.spec.Models[i], results[i]
		files = append(files, all[i])
		if read[i] {
			action = plan.Pack
		}
		names = append(names, m.Dest())
		ann[AnnModelPfx+m.Dest()] = r.SHA256
	}
	layer, err := materialize.NewModelGroupLayer(b.cache.Dir, files, b.modTime)
	if err != nil {
		return plan.Part{}, fmt.Errorf("model %s: %w", strings.Join(names, ", "), err)
	}
	key := materialize.ModelLayerKey(files, b.modTime)
	if len(members) == 1 {
		return b.singleModelPart(b.spec.Models[members[0]], results[members[0]], key, layer, action), nil
	}
	ann[AnnName] = strings.Join(names, ",")
	return plan.Part{Kind: plan.Model, Name: "group: " + strings.Join(names, ", "), Key: key, Action: action, Layer: layer, Annotations: ann,
		History: "comfy-image: model group " + strings.Join(names, ", ")}, nil
}

// modelPath is where a model lies in the image: <subdir>/<file> in the
// models image, models/<subdir>/<file> when baked into the app image.
func (b *builder) modelPath(m versions.Model) string {
	if b.opts.Models == plan.Bake {
		return path.Join(strings.TrimPrefix(ModelsDir, "/"), m.Dest())
	}
	return m.Dest()
}

func (b *builder) singleModelPart(m versions.Model, lm versions.LockedModel, key string, layer v1.Layer, action plan.Action) plan.Part {
	sha := lm.SHA256
	return plan.Part{Kind: plan.Model, Name: m.Dest(), SHA256: sha, Key: key, Layer: layer, Action: action,
		Annotations: map[string]string{AnnPart: "model", AnnName: m.Dest(), AnnSource: m.Source, AnnSHA256: sha, AnnSize: strconv.FormatInt(lm.Size, 10)},
		History:     fmt.Sprintf("comfy-image: model %s (sha256 %s)", m.Dest(), sha)}
}

// localModelAsLocked says whether a file:// model the spec does not pin is
// still the file the lock recorded: the cache digested it and its stamp
// (size, mtime, inode, ctime) has not moved since. Otherwise the lock's
// sha256, and the registry's layer of it, say nothing of the file as it
// is now: the model is read (and refused if it is not the locked bytes)
// rather than the old layer kept. Other models, and file:// ones the spec
// pins, are as their pin says.
func (b *builder) localModelAsLocked(f *models.Fetcher, m versions.Model, lm versions.LockedModel, inImage string) bool {
	src, _, local := models.LocalModel(f, m, b.lock)
	if !local || m.SHA256 != "" {
		return true
	}
	_, ok := materialize.KnownModelFile(b.cache.Dir, materialize.ModelFile{File: src, Path: inImage, SHA256: lm.SHA256, InPlace: true}, b.modTime)
	return ok
}

// remoteModelParts uses the outputs as the cache of model layers: when
// every model is pinned (by the lock or the image at a registry output)
// and its layer is in every output the image goes to, no model is
// downloaded or read (a lazy layer downloads it if a writer asks).
func (b *builder) remoteModelParts(ctx context.Context, f *models.Fetcher, slots int) ([]plan.Part, bool) {
	outs := b.modelOuts
	if b.opts.Models == plan.Bake {
		outs = b.appOuts
	}
	if len(outs) == 0 || len(b.spec.Models) > slots {
		return nil, false
	}
	var parts []plan.Part
	var locked []versions.LockedModel
	for _, m := range b.spec.Models {
		lm, ok := models.LockedFor(b.lock, m)
		if !ok {
			if lm, ok = b.registryModel(ctx, m); !ok {
				return nil, false
			}
		}
		inImage := b.modelPath(m)
		if !b.localModelAsLocked(f, m, lm, inImage) {
			return nil, false
		}
		key := materialize.ModelLayerKey([]materialize.ModelFile{{Path: inImage, SHA256: lm.SHA256}}, b.modTime)
		layer, ok := b.knownLayer(ctx, key, outs, func() (v1.Layer, error) { return b.fetchModelLayer(ctx, m, lm, inImage) })
		if !ok {
			return nil, false
		}
		parts = append(parts, b.singleModelPart(m, lm, key, layer, plan.ReuseRegistry))
		locked = append(locked, lm)
	}
	b.lock.Models = locked
	return parts, true
}

// registryModel is model m as the image at a push reference (or
// --cache-from) records it, when that record may stand for m without
// reading m: the spec pins its sha256, or the hub says m's revision holds
// those bytes now (one HEAD: the lock rule's fresh resolution). A file://,
// plain https or other model the lock does not pin is read or downloaded
// instead: its bytes may have changed since that image was built, and the
// result must not depend on which outputs a build has.
func (b *builder) registryModel(ctx context.Context, m versions.Model) (versions.LockedModel, bool) {
	lm, ok := b.registryModels[m.Dest()]
	if !ok || lm.Source != m.Source || (m.SHA256 != "" && m.SHA256 != lm.SHA256) {
		return versions.LockedModel{}, false
	}
	lm.Name = m.Name
	if m.SHA256 != "" {
		return lm, true
	}
	src, err := versions.ParseSource(m.Source)
	if err != nil || src.Scheme != "hf" || b.opts.Offline {
		return versions.LockedModel{}, false
	}
	f := models.ForSpec(b.spec, models.Setup{CacheDir: b.opts.CacheDir, Log: b.opts.Log, LookupEnv: b.opts.LookupEnv, Progress: progress.Discard()})
	rev, sha, size, err := f.Current(ctx, models.RequestFor(m))
	if err != nil || sha != lm.SHA256 {
		return versions.LockedModel{}, false
	}
	lm.Revision, lm.Size = rev, size
	return lm, true
}

// fetchModelLayer downloads the pinned model lm (unless the model store
// has it) and makes its layer: the bytes of a lazy model layer.
func (b *builder) fetchModelLayer(ctx context.Context, m versions.Model, lm versions.LockedModel, inImage string) (v1.Layer, error) {
	f := models.ForSpec(b.spec, models.Setup{CacheDir: b.opts.CacheDir, Offline: b.opts.Offline, Log: b.opts.Log, LookupEnv: b.opts.LookupEnv, Progress: b.opts.Reporter})
	observe := materialize.ModelLayerObserver(b.cache.Dir, inImage, b.modTime, f.Store.BlobPath)
	got, err := models.FetchLockedObserved(ctx, f, m, &versions.Lock{Models: []versions.LockedModel{lm}}, observe)
	f.Progress.Wait()
	if err != nil {
		return nil, err
	}
	return materialize.NewModelGroupLayer(b.cache.Dir, []materialize.ModelFile{{File: f.Store.BlobPath(got.SHA256), Path: inImage, SHA256: got.SHA256}}, b.modTime)
}

// layersOf are the parts as the layers assemble appends.
func layersOf(parts []plan.Part) []assemble.Layer {
	out := make([]assemble.Layer, len(parts))
	for i, p := range parts {
		out[i] = assemble.Layer{Layer: p.Layer, Key: p.Key, Annotations: p.Annotations, History: p.History}
	}
	return out
}

// appImage is the base with the app parts and the version's config.
func (b *builder) appImage(parts []plan.Part) (v1.Image, error) {
	c := assemble.AppConfig{
		Layers:  layersOf(parts),
		Created: b.modTime,
		Root:    Root,
		// Arguments after the image name are ComfyUI's; Cmd is their default.
		Cmd: []string{"--listen", "0.0.0.0", "--port", "8188"},
		// 8188 ComfyUI, 8000 RunPod's local test API (SERVE_API_LOCALLY=true).
		Ports:        []string{"8188/tcp", "8000/tcp"},
		Env:          map[string]string{},
		VersionID:    b.spec.VersionID,
		SpecDigest:   b.spec.Digest,
		CoreRepo:     b.lock.Comfy.Repo,
		CoreCommit:   b.lock.Comfy.Commit,
		ModelsImage:  b.modelsDigest,
		Models:       map[string]string{},
		ConfigLabels: map[string]string{},
	}
	_, entry, _ := worker.Paths("/" + Root)
	c.Entrypoint = []string{entry}
	// No COMFY_MODELS_DIR: the entry point chooses (see layers/worker).
	values, secret := b.spec.ResolveEnv(b.opts.LookupEnv)
	for k, v := range values {
		if !secret[k] {
			c.Env[k] = v
		}
	}
	if loc, err := ParseLocation(b.opts.Base); err == nil && loc.Kind == Registry {
		c.BaseName = loc.Ref.Name() // never a local path
	}
	for _, n := range b.lock.CustomNodes {
		c.Nodes = append(c.Nodes, assemble.Node{Name: n.Name, Repo: n.Repo, Commit: n.Commit})
	}
	// Models are labelled from this build's own resolution of the spec's
	// models (modelParts pins each), never from pins an earlier realize
	// left in the lock: the config must not depend on the cache.
	if b.opts.Models != plan.Skip {
		for _, m := range b.spec.Models {
			if lm, ok := models.LockedFor(b.lock, m); ok {
				c.Models[m.Dest()] = lm.SHA256
			}
		}
	}
	if d, err := b.base.Digest(); err == nil {
		c.ConfigLabels[AnnBaseFacts] = factsOf(d, b.info).label()
	}
	if set, ok := b.pythonSetLabel(); ok {
		c.ConfigLabels[AnnPythonSet] = set
	}
	return assemble.App(b.base, c)
}

// modelsImage is the models image of the model parts, for the base's
// platform.
func (b *builder) modelsImage(parts []plan.Part) (v1.Image, error) {
	baseCf, err := b.base.ConfigFile()
	if err != nil {
		return nil, err
	}
	c := assemble.ModelsConfig{Layers: layersOf(parts), Created: b.modTime, OS: baseCf.OS, Architecture: baseCf.Architecture,
		VersionID: b.spec.VersionID, SpecDigest: b.spec.Digest, Models: map[string]string{}}
	for _, p := range parts {
		c.Models[p.Name] = p.SHA256
	}
	return assemble.Models(c)
}

// recordLayers writes each layer's digest into the lock.
func (b *builder) recordLayers(parts []plan.Part) {
	b.lock.Layers = nil
	for _, p := range parts {
		d, _ := p.Layer.Digest()
		diff, _ := p.Layer.DiffID()
		size, _ := p.Layer.Size()
		b.lock.Layers = append(b.lock.Layers, versions.LockedLayer{Part: p.Label(), Key: p.Key, Digest: d.String(), DiffID: diff.String(), Size: size})
	}
}

// ghcrLayerLimit is GHCR's per-layer size limit.
const ghcrLayerLimit = 10 << 30

func (b *builder) warnHuge(parts []plan.Part) {
	for _, p := range parts {
		if size, _ := p.Layer.Size(); size > ghcrLayerLimit {
			b.logf("warning: layer %s is %s, over the 10 GB per-layer limit of some registries (GHCR)", p.Label(), progress.Size(size))
		}
	}
}
