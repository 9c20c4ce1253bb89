package realize

import (
	"context"

	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

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
}

func (o Options) log() io.Writer {
	if o.Log == nil {
		return io.Discard
	}
	return o.Log
}

func (o Options) jobs() int {
	if o.Jobs <= 0 {
		return 4
	}
	return o.Jobs
}

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

// ResolveRepos fetches the mirrors of the core and every node (in parallel)
// and resolves each to a commit. Every failure is reported, not only the first.
func ResolveRepos(ctx context.Context, s *versions.Spec, opts Options) (*versions.Lock, error) {
	cache := NewGitCache(opts)
	wants := reposOf(s)
	locked := make([]versions.LockedRepo, len(wants))
	registry := make([]versions.LockedNode, len(wants))
	errs := make([]error, len(wants))
	sem := make(chan struct{}, opts.jobs())
	var wg sync.WaitGroup
	for i, w := range wants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if w.node != nil {
				ln, err := resolveRegistryNode(ctx, opts, *w.node)
				if err != nil {
					errs[i] = fmt.Errorf("%s: %w", w.label, err)
				}
				registry[i], locked[i] = ln, ln.LockedRepo
				return
			}
			res, err := cache.Resolve(ctx, w.repo.Repo, w.repo.Ref, w.repo.Commit)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", w.label, err)
				return
			}
			subs, err := lockSubmodules(ctx, opts, cache, w, res.Commit)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", w.label, err)
				return
			}
			locked[i] = versions.LockedRepo{
				Repo:        versions.RedactURL(w.repo.Repo),
				Ref:         w.repo.Ref,
				ResolvedRef: res.Ref,
				Commit:      res.Commit,
				Submodules:  subs,
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
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
			w.label, action, versions.RedactURL(w.repo.Repo), dir, asked, now))
	}
	return lines
}

// LoadOrResolve returns the lock of s when it is current; otherwise, unless
// locked is set, it resolves the repositories again and writes a new lock.
func LoadOrResolve(ctx context.Context, s *versions.Spec, opts Options, locked bool) (*versions.Lock, error) {
	file := versions.LockPath(opts.CacheDir, s.VersionID)
	l, err := versions.ReadLock(file)
	if err == nil {
		err = l.CheckCurrent(s, file)
	}
	if err == nil {
		return l, nil
	}
	if locked {
		return nil, fmt.Errorf("--locked: %w", err)
	}
	if !errors.Is(err, versions.ErrNoLock) {
		fmt.Fprintf(opts.log(), "lock: %v; resolving again\n", err)
	}
	fresh, err := ResolveRepos(ctx, s, opts)
	if err != nil {
		return nil, err
	}
	CarryOver(l, fresh, s)
	return fresh, versions.WriteLock(file, fresh)
}

// CarryOver keeps what an older lock pinned that a new resolution of the
// repositories does not change: the models (same source and destination;
// their content is pinned by sha256). Python packages are not kept: new
// commits may need other ones.
func CarryOver(old, fresh *versions.Lock, s *versions.Spec) {
	if old == nil {
		return
	}
	for _, m := range s.Models {
		if lm, ok := LockedModelFor(old, m); ok && (m.SHA256 == "" || m.SHA256 == lm.SHA256) {
			fresh.Models = append(fresh.Models, lm)
		}
	}
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
