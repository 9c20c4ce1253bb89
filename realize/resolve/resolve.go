// Package resolve turns a spec and its old lock into a new lock, a value in
// and a value out: refs to commits, registry nodes to zips pinned by
// sha256, models to revision, size and sha256, the Python set carried while
// its inputs hold; with the list of what changed. Keeping the lock file is
// the caller's (InFile is the one helper that reads and writes it).
package resolve

import (
	"context"
	"fmt"
	"strings"

	"github.com/comfy-image/comfy-image/internal/parallel"
	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/realize/checkout"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/versions"
)

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

// kept is old's entry for want i when the resolution keeps it: a node not
// named by WithUpdate (or the core), or a registry node pinned to the
// version old already holds (its zip is pinned by sha256; nothing to ask).
func (o options) kept(old *versions.Lock, s *versions.Spec, i int, w repoWant) (versions.LockedNode, bool) {
	if old == nil {
		return versions.LockedNode{}, false
	}
	if i == 0 {
		one := &versions.Spec{VersionID: s.VersionID, Comfy: s.Comfy}
		if (!o.moves("comfy") || s.Comfy.Commit != "") && old.Covers(one, "", true) == nil {
			return versions.LockedNode{LockedRepo: old.Comfy}, true
		}
		return versions.LockedNode{}, false
	}
	n := s.CustomNodes[i-1]
	one := &versions.Spec{VersionID: s.VersionID, Comfy: versions.Repo{Repo: old.Comfy.Repo, Commit: old.Comfy.Commit}, CustomNodes: []versions.Node{n}}
	if old.Covers(one, "", true) != nil {
		return versions.LockedNode{}, false
	}
	was := old.ForSpec(one).CustomNodes[0]
	if !o.moves(n.Name) || n.Commit != "" || (w.node != nil && n.Version != "") {
		return was, true
	}
	return versions.LockedNode{}, false
}

// Resolve makes the lock of spec from the old lock (nil: none), a value
// in and a value out; the caller keeps the file (see InFile).
//
// By default every ref (a branch, a tag, or the default branch) is
// resolved afresh with one listing of its repository and a fetch only when
// the mirror lacks the commit, in parallel; pinned commits are used as
// given; WithUpdate keeps what it does not name from old. Models and
// Python sets of old are carried over; online, a model pinned from a branch
// of the hub is checked against what the branch holds now, and a model
// WithUpdate names is resolved again. Changes says what moved against old.
//
// WithLocked: old is the truth; it must cover spec. WithOffline: refs are
// resolved from the mirrors as they are, nothing is asked of a server.
func Resolve(ctx context.Context, spec *versions.Spec, old *versions.Lock, opts ...Option) (*versions.Lock, Changes, error) {
	o := makeOptions(opts)
	if o.locked {
		l, err := o.covering(spec, old)
		return l, Changes{}, err
	}
	l, err := o.resolveRepos(ctx, spec, old)
	if err != nil {
		return nil, Changes{}, err
	}
	o.carryOver(old, l, spec)
	if !o.skipModels { // offline, only file:// models are read (resolveModels)
		if err := o.resolveModels(ctx, spec, l); err != nil {
			return nil, Changes{}, err
		}
	}
	return l, changesBetween(old, l), nil
}

// covering is old for spec when it covers it, else an error naming the
// lock and every entry it lacks.
func (o options) covering(spec *versions.Spec, old *versions.Lock) (*versions.Lock, error) {
	if old == nil {
		return nil, fmt.Errorf("%s: %w (run `comfy-image lock` first)", o.lockName, versions.ErrNoLock)
	}
	if err := old.Covers(spec, o.lockName, o.skipModels); err != nil {
		return nil, err
	}
	return old.ForSpec(spec), nil
}

// resolveRepos locks the core and every node: kept from old, asked of the
// Comfy Registry, or resolved in its mirror with its submodules.
func (o options) resolveRepos(ctx context.Context, s *versions.Spec, old *versions.Lock) (*versions.Lock, error) {
	cache := o.gitCache()
	wants := reposOf(s)
	locked := make([]versions.LockedRepo, len(wants))
	registry := make([]versions.LockedNode, len(wants))
	// Every repository is resolved even when one fails, so one run names
	// every ref that cannot be resolved.
	err := parallel.Each(ctx, len(wants), o.jobs, func(ctx context.Context, i int) error {
		w := wants[i]
		if was, ok := o.kept(old, s, i, w); ok {
			registry[i], locked[i] = was, was.LockedRepo
			return nil
		}
		if o.readOnly && !o.offline {
			ln, err := o.lookUp(ctx, cache, w, old)
			registry[i], locked[i] = ln, ln.LockedRepo
			return err
		}
		if w.node != nil {
			ln, err := o.resolveRegistryNode(ctx, *w.node)
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
		subs, err := o.lockSubmodules(ctx, cache, w, res.Commit)
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

// lookUp is the entry of w as an online resolution would lock it, from one
// ref listing and nothing else (WithReadOnly).
func (o options) lookUp(ctx context.Context, cache *gitcache.Cache, w repoWant, old *versions.Lock) (versions.LockedNode, error) {
	if w.node != nil {
		v, err := registryInstall(ctx, checkout.RegistryBase(), w.node.Registry, w.node.Version)
		if err != nil {
			return versions.LockedNode{}, fmt.Errorf("%s: registry node %s: %w", w.label, w.node.Registry, err)
		}
		ln := versions.LockedNode{Name: w.node.Name, Registry: w.node.Registry, Version: v.Version}
		ln.Repo = "https://registry.comfy.org/nodes/" + w.node.Registry
		ln.Ref, ln.ResolvedRef = w.node.Version, "registry "+w.node.Registry+"@"+v.Version
		return ln, nil
	}
	res, _, err := cache.Lookup(ctx, w.repo.Repo, w.repo.Ref, w.repo.Commit)
	if err != nil {
		return versions.LockedNode{}, fmt.Errorf("%s: %w", w.label, err)
	}
	lr := versions.LockedRepo{Repo: repourl.Redact(w.repo.Repo), Ref: w.repo.Ref, ResolvedRef: res.Ref, Commit: res.Commit}
	if was, ok := lockedRepoOf(old, w); ok && was.Commit == res.Commit {
		lr.Submodules = was.Submodules
	}
	return versions.LockedNode{LockedRepo: lr}, nil
}

// lockedRepoOf is old's entry for w's repository (the core, or the node of
// the same name and repository).
func lockedRepoOf(old *versions.Lock, w repoWant) (versions.LockedRepo, bool) {
	if old == nil {
		return versions.LockedRepo{}, false
	}
	if w.spec.Name == "" {
		return old.Comfy, old.Comfy.Repo == repourl.Redact(w.repo.Repo)
	}
	for _, n := range old.CustomNodes {
		if n.Name == w.spec.Name && n.Repo == repourl.Redact(w.repo.Repo) {
			return n.LockedRepo, true
		}
	}
	return versions.LockedRepo{}, false
}

// Plan describes what Resolve would do with the repositories of s, from
// the mirrors as they are now, without fetching or writing anything.
func Plan(s *versions.Spec, opts ...Option) []string {
	o := makeOptions(opts)
	cache := gitcache.New(gitcache.Folder(o.cacheDir))
	var lines []string
	for _, w := range reposOf(s) {
		if w.node != nil {
			version := w.node.Version
			if version == "" {
				version = "the latest version"
			}
			lines = append(lines, fmt.Sprintf("%s: would ask %s for registry node %s, %s, and fetch its zip", w.label, checkout.RegistryBase(), w.node.Registry, version))
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
		if o.offline {
			action = "read (offline)"
		}
		res, ok, err := cache.Peek(w.repo.Repo, w.repo.Ref, w.repo.Commit)
		now := ""
		switch {
		case !ok && o.offline:
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

// carryOver keeps what an older lock pinned that a new resolution of the
// repositories does not change: the models (same source and destination;
// their content is pinned by sha256; one WithUpdate names is resolved
// again from its pin by resolveModels), the Python sets with the digests of
// their inputs (checked against the new commits where they are used)
// unless WithUpdate names "python", and the recorded layers.
func (o options) carryOver(old, fresh *versions.Lock, s *versions.Spec) {
	if old == nil {
		return
	}
	for _, m := range s.Models {
		if lm, ok := models.LockedFor(old, m); ok && (m.SHA256 == "" || m.SHA256 == lm.SHA256) {
			fresh.Models = append(fresh.Models, lm)
		}
	}
	if len(o.update) == 0 || !o.moves("python") {
		fresh.Python = old.Python
	}
	if fresh.Python.Packages == nil {
		fresh.Python.Packages = []versions.LockedPackage{}
	}
	fresh.Layers = old.Layers
}

// lockSubmodules fetches the submodules of a resolved repository (each a
// mirror in the cache) and its LFS objects when asked, so an unreachable
// one fails the lock naming its path and URL, and lists the submodules for
// the lock. Submodules left out and LFS pointers left as pointers are
// warned about, naming the files.
func (o options) lockSubmodules(ctx context.Context, cache *gitcache.Cache, w repoWant, commit string) ([]versions.LockedSubmodule, error) {
	r, err := checkout.OpenMirror(ctx, cache, w.repo.Repo, commit)
	if err != nil {
		return nil, err
	}
	info, err := checkout.InspectTree(r, commit, checkout.TreeOptions(ctx, cache, w.repo.Repo, w.spec)...)
	if err != nil {
		return nil, err
	}
	if len(info.SkippedSubmodules) > 0 {
		fmt.Fprintf(o.log, "warning: %s: \"submodules\": false, so its submodules are left out as empty folders: %s\n", w.label, strings.Join(info.SkippedSubmodules, ", "))
	}
	if len(info.LFSPointers) > 0 {
		fmt.Fprintf(o.log, "warning: %s: %d Git LFS files are checked out as pointer text, not their content (set \"lfs\": true on the node to fetch them): %s\n", w.label, len(info.LFSPointers), strings.Join(info.LFSPointers, ", "))
	}
	return info.Submodules, nil
}

// gitCache is the cache of mirrors under the cache root.
func (o options) gitCache() *gitcache.Cache {
	return checkout.NewGitCache(o.cacheDir, o.offline, o.log)
}
