package realize

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/comfy-image/comfy-image/internal/parallel"
	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/versions"
)

// Options are the settings shared by the steps of the pipeline.
type Options struct {
	CacheDir string
	Offline  bool
	DryRun   bool
	// Log receives plain progress lines.
	Log io.Writer
	// Jobs bounds parallel fetches (0: 4).
	Jobs int
	// LockFile is where the lock is read and written ("": the cache's
	// resolved/<version_id>.lock.json), e.g. versions/<id>.lock.json
	// committed next to the spec.
	LockFile string
}

// LockPath is the lock file of version id under these options.
func (o Options) LockPath(id string) string {
	if o.LockFile != "" {
		return o.LockFile
	}
	return versions.LockPath(o.CacheDir, id)
}

func (o Options) log() io.Writer {
	if o.Log == nil {
		return io.Discard
	}
	return o.Log
}

func (o Options) jobs() int { return parallel.Limit(o.Jobs, parallel.Fetches) }

// repoWant is one repository of a spec to resolve.
type repoWant struct {
	label string // "comfy" or "custom_nodes[i] (name)"
	repo  versions.Repo
	// node is set for a Comfy Registry node (resolved through the registry).
	node *versions.Node
	// spec is the spec's node (the zero Node for the core).
	spec versions.Node
}

func reposOf(s *versions.Spec) []repoWant {
	ws := []repoWant{{label: "comfy", repo: s.Comfy}}
	for i, n := range s.CustomNodes {
		w := repoWant{label: fmt.Sprintf("custom_nodes[%d] (%s)", i, n.Name), repo: n.Repo, spec: n}
		if n.Registry != "" {
			w.node = &s.CustomNodes[i]
		}
		ws = append(ws, w)
	}
	return ws
}

// Resolution says what a resolve may keep from an older lock.
type Resolution struct {
	// Old is the previous lock (nil: none).
	Old *versions.Lock
	// Update names what moves ("comfy", node names, model names or
	// destinations); empty: everything. What is not named keeps its entry
	// in Old when that still answers the spec.
	Update []string
	// LookupEnv resolves the spec's ${VAR} (HF_TOKEN, HF_ENDPOINT) to ask
	// the hub for models' current revisions (nil: os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// SkipModels leaves the models' pins as they are.
	SkipModels bool
}

func (r Resolution) moves(names ...string) bool {
	if len(r.Update) == 0 {
		return true
	}
	for _, u := range r.Update {
		for _, n := range names {
			if u == n {
				return true
			}
		}
	}
	return false
}

// kept is Old's entry for want i when the resolution keeps it: a node not
// named by Update (or the core), or a registry node pinned to the version
// Old already holds (its zip is pinned by sha256; nothing to ask).
func (r Resolution) kept(s *versions.Spec, i int, w repoWant) (versions.LockedNode, bool) {
	if r.Old == nil {
		return versions.LockedNode{}, false
	}
	if i == 0 {
		one := &versions.Spec{VersionID: s.VersionID, Comfy: s.Comfy}
		if (!r.moves("comfy") || s.Comfy.Commit != "") && r.Old.Covers(one, "", true) == nil {
			return versions.LockedNode{LockedRepo: r.Old.Comfy}, true
		}
		return versions.LockedNode{}, false
	}
	n := s.CustomNodes[i-1]
	one := &versions.Spec{VersionID: s.VersionID, Comfy: versions.Repo{Repo: r.Old.Comfy.Repo, Commit: r.Old.Comfy.Commit}, CustomNodes: []versions.Node{n}}
	if r.Old.Covers(one, "", true) != nil {
		return versions.LockedNode{}, false
	}
	old := r.Old.ForSpec(one).CustomNodes[0]
	if !r.moves(n.Name) || n.Commit != "" || (w.node != nil && n.Version != "") {
		return old, true
	}
	return versions.LockedNode{}, false
}

// ResolveRepos fetches the mirrors of the core and every node (in parallel)
// and resolves each to a commit. Every failure is reported, not only the first.
func ResolveRepos(ctx context.Context, s *versions.Spec, opts Options) (*versions.Lock, error) {
	return Resolve(ctx, s, opts, Resolution{})
}

// Resolve makes a new lock for s: every ref (a branch, a tag, or the
// default branch) resolved afresh with one listing of its repository and a
// fetch only when the mirror lacks the commit, in parallel; pinned commits
// used as given; what res keeps taken from the old lock. Models and Python
// sets of the old lock are carried over (CarryOver); online, a model pinned
// from a branch of the hub is checked against what the branch holds now
// (refreshModels).
func Resolve(ctx context.Context, s *versions.Spec, opts Options, res Resolution) (*versions.Lock, error) {
	l, err := resolveRepos(ctx, s, opts, res)
	if err != nil {
		return nil, err
	}
	CarryOver(res.Old, l, s, res.Update...)
	if !opts.Offline && !res.SkipModels {
		refreshModels(ctx, s, opts, l, res)
	}
	return l, nil
}

func resolveRepos(ctx context.Context, s *versions.Spec, opts Options, rs Resolution) (*versions.Lock, error) {
	cache := NewGitCache(opts)
	wants := reposOf(s)
	locked := make([]versions.LockedRepo, len(wants))
	registry := make([]versions.LockedNode, len(wants))
	// Every repository is resolved even when one fails, so one run names
	// every ref that cannot be resolved.
	err := parallel.Each(ctx, len(wants), opts.jobs(), func(ctx context.Context, i int) error {
		w := wants[i]
		if old, ok := rs.kept(s, i, w); ok {
			registry[i], locked[i] = old, old.LockedRepo
			return nil
		}
		if w.node != nil {
			ln, err := resolveRegistryNode(ctx, opts, *w.node)
			registry[i], locked[i] = ln, ln.LockedRepo
			if err != nil {
				return fmt.Errorf("%s: %w", w.label, err)
			}
			return nil
		}
		res, err := cache.Resolve(ctx, w.repo.Repo, w.repo.Ref, w.repo.Commit)
		if err != nil {
			return fmt.Errorf("%s: %w", w.label, err)
		}
		subs, err := lockSubmodules(ctx, opts, cache, w, res.Commit)
		if err != nil {
			return fmt.Errorf("%s: %w", w.label, err)
		}
		locked[i] = versions.LockedRepo{
			Repo:        repourl.Redact(w.repo.Repo),
			Ref:         w.repo.Ref,
			ResolvedRef: res.Ref,
			Commit:      res.Commit,
			Submodules:  subs,
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	l := &versions.Lock{
		LockVersion: versions.LockVersion,
		VersionID:   s.VersionID,
		SpecDigest:  s.Digest,
		Comfy:       locked[0],
		CustomNodes: []versions.LockedNode{},
		Models:      []versions.LockedModel{},
		Python:      versions.LockedPython{Packages: []versions.LockedPackage{}},
	}
	for i, n := range s.CustomNodes {
		ln := registry[i+1]
		ln.Name, ln.LockedRepo = n.Name, locked[i+1]
		l.CustomNodes = append(l.CustomNodes, ln)
	}
	return l, nil
}

// PlanRepos describes what ResolveRepos would do, from the mirrors as they
// are now, without fetching or writing anything.
func PlanRepos(s *versions.Spec, opts Options) []string {
	cache := gitcache.New(GitDir(opts.CacheDir))
	var lines []string
	for _, w := range reposOf(s) {
		if w.node != nil {
			version := w.node.Version
			if version == "" {
				version = "the latest version"
			}
			lines = append(lines, fmt.Sprintf("%s: would ask %s for registry node %s, %s, and fetch its zip", w.label, registryBase(), w.node.Registry, version))
			continue
		}
		asked := w.repo.Ref
		switch {
		case w.repo.Commit != "":
			asked = "commit " + w.repo.Commit
		case asked == "":
			asked = "default branch"
		}
		dir, err := cache.MirrorPath(w.repo.Repo)
		if err != nil {
			lines = append(lines, fmt.Sprintf("%s: %v", w.label, err))
			continue
		}
		action := "fetch"
		if opts.Offline {
			action = "read (offline)"
		}
		res, ok, err := cache.Peek(w.repo.Repo, w.repo.Ref, w.repo.Commit)
		now := ""
		switch {
		case !ok && opts.Offline:
			action, now = "MISSING offline", "; no mirror in the cache"
		case !ok:
			action = "clone"
		case err != nil:
			now = fmt.Sprintf("; not resolvable from the mirror yet: %v", err)
		default:
			now = "; mirror has " + res.Commit
		}
		lines = append(lines, fmt.Sprintf("%s: would %s %s into %s, resolve %s%s",
			w.label, action, repourl.Redact(w.repo.Repo), dir, asked, now))
	}
	return lines
}

// LockMode says how a command treats the recorded lock.
type LockMode struct {
	// Locked: the lock is the truth; nothing is resolved, and a missing
	// lock or one that does not cover the spec is an error.
	Locked bool
	// SkipModels: the models need not be in the lock.
	SkipModels bool
	// LookupEnv resolves the spec's ${VAR} (nil: os.LookupEnv).
	LookupEnv func(string) (string, bool)
}

// ReadCovering reads the lock of s and checks that it covers the spec.
func ReadCovering(s *versions.Spec, opts Options, skipModels bool) (*versions.Lock, string, error) {
	file := opts.LockPath(s.VersionID)
	l, err := versions.ReadLock(file)
	if err != nil {
		return nil, file, err
	}
	if err := l.Covers(s, file, skipModels); err != nil {
		return nil, file, err
	}
	return l.ForSpec(s), file, nil
}

// LoadOrResolve returns the lock to work from. With mode.Locked or
// opts.Offline it is the recorded lock, which must cover the spec. Online,
// every ref is resolved afresh (Resolve, keeping what the old lock pinned
// that is still current), changes are logged, and the lock is written when
// it changed: the same spec gives the same commits on any machine at a
// given moment, whatever its cache holds.
func LoadOrResolve(ctx context.Context, s *versions.Spec, opts Options, mode LockMode) (*versions.Lock, error) {
	if mode.Locked || opts.Offline {
		flag := "--locked"
		if !mode.Locked {
			flag = "--offline"
		}
		l, _, err := ReadCovering(s, opts, mode.SkipModels)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		return l, nil
	}
	file := opts.LockPath(s.VersionID)
	old, err := versions.ReadLock(file)
	if err != nil && !errors.Is(err, versions.ErrNoLock) {
		fmt.Fprintf(opts.log(), "lock: %v; resolving again\n", err)
	}
	fresh, err := Resolve(ctx, s, opts, Resolution{Old: old, LookupEnv: mode.LookupEnv, SkipModels: mode.SkipModels})
	if err != nil {
		return nil, err
	}
	if old != nil {
		for _, line := range fresh.Diff(old) {
			fmt.Fprintln(opts.log(), "lock: "+line)
		}
	}
	return fresh, WriteLockIfChanged(file, old, fresh)
}

// WriteLockIfChanged writes l to file unless old holds the same content,
// so an unchanged rerun writes nothing (a committed lock stays untouched).
func WriteLockIfChanged(file string, old, l *versions.Lock) error {
	if old != nil {
		a, _ := json.Marshal(old)
		b, _ := json.Marshal(l)
		if bytes.Equal(a, b) {
			return nil
		}
	}
	return versions.WriteLock(file, l)
}

// CarryOver keeps what an older lock pinned that a new resolution of the
// repositories does not change: the models (same source and destination;
// their content is pinned by sha256) unless update names them, the Python
// sets with the digests of their inputs (checked against the new commits
// where they are used) unless update names "python", and the recorded
// layers.
func CarryOver(old, fresh *versions.Lock, s *versions.Spec, update ...string) {
	if old == nil {
		return
	}
	moves := Resolution{Update: update}
	for _, m := range s.Models {
		if len(update) > 0 && moves.moves(m.Name, m.Dest()) {
			continue
		}
		if lm, ok := LockedModelFor(old, m); ok && (m.SHA256 == "" || m.SHA256 == lm.SHA256) {
			fresh.Models = append(fresh.Models, lm)
		}
	}
	if len(update) == 0 || !moves.moves("python") {
		fresh.Python = old.Python
	}
	if fresh.Python.Packages == nil {
		fresh.Python.Packages = []versions.LockedPackage{}
	}
	fresh.Layers = old.Layers
}

// OpenMirror opens the cache's mirror of repo, fetching it first when it
// lacks commit (a lock made elsewhere, or a cleaned cache).
func OpenMirror(ctx context.Context, cache *gitcache.Cache, repo, commit string) (*git.Repository, error) {
	if strings.HasPrefix(repo, registryScheme+"://") {
		return openRegistryRepo(ctx, cache, repo, commit)
	}
	if g, err := cache.Open(repo); err == nil {
		if _, err := g.CommitObject(plumbing.NewHash(commit)); err == nil {
			return g, nil
		}
	}
	if _, err := cache.Resolve(ctx, repo, "", commit); err != nil {
		return nil, err
	}
	return cache.Open(repo)
}

// lockSubmodules fetches the submodules of a resolved repository (each a
// mirror in the cache) and its LFS objects when asked, so an unreachable
// one fails the lock naming its path and URL, and lists the submodules for
// the lock. Submodules left out and LFS pointers left as pointers are
// warned about, naming the files.
func lockSubmodules(ctx context.Context, opts Options, cache *gitcache.Cache, w repoWant, commit string) ([]versions.LockedSubmodule, error) {
	r, err := OpenMirror(ctx, cache, w.repo.Repo, commit)
	if err != nil {
		return nil, err
	}
	info, err := InspectTree(r, commit, TreeOptions(ctx, opts, cache, w.repo.Repo, w.spec)...)
	if err != nil {
		return nil, err
	}
	if len(info.SkippedSubmodules) > 0 {
		fmt.Fprintf(opts.log(), "warning: %s: \"submodules\": false, so its submodules are left out as empty folders: %s\n", w.label, strings.Join(info.SkippedSubmodules, ", "))
	}
	if len(info.LFSPointers) > 0 {
		fmt.Fprintf(opts.log(), "warning: %s: %d Git LFS files are checked out as pointer text, not their content (set \"lfs\": true on the node to fetch them): %s\n", w.label, len(info.LFSPointers), strings.Join(info.LFSPointers, ", "))
	}
	return info.Submodules, nil
}

// TreeOptions are the checkout options of a repository (node: the spec's
// node; the core is versions.Node{}): its submodules checked out (their
// mirrors opened and fetched through cache) unless the node sets
// submodules false, and its LFS objects fetched when it sets lfs true.
func TreeOptions(ctx context.Context, opts Options, cache *gitcache.Cache, repoURL string, node versions.Node) []CheckoutOption {
	var out []CheckoutOption
	if node.WantsSubmodules() {
		out = append(out, WithSubmodules(repoURL, func(repo, commit string) (*git.Repository, error) {
			return OpenMirror(ctx, cache, repo, commit)
		}))
	}
	if node.LFS {
		out = append(out, WithLFS(ctx, opts, repoURL))
	}
	return out
}

// NewGitCache is the cache of mirrors under opts.CacheDir.
func NewGitCache(opts Options) *gitcache.Cache {
	c := gitcache.New(GitDir(opts.CacheDir))
	c.Offline = opts.Offline
	c.Log = opts.log()
	return c
}
