package realize

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/versions"
)

// Options are the settings shared by the steps of the pipeline.
type Options struct {
	CacheDir string
	Offline  bool
	DryRun   bool
	// Log receives plain progress lines; Progress, when set, receives
	// terminal progress output of long steps.
	Log      io.Writer
	Progress io.Writer
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
}

func reposOf(s *versions.Spec) []repoWant {
	ws := []repoWant{{"comfy", s.Comfy}}
	for i, n := range s.CustomNodes {
		ws = append(ws, repoWant{fmt.Sprintf("custom_nodes[%d] (%s)", i, n.Name), n.Repo})
	}
	return ws
}

// ResolveRepos fetches the mirrors of the core and every node (in parallel)
// and resolves each to a commit. Every failure is reported, not only the first.
func ResolveRepos(ctx context.Context, s *versions.Spec, opts Options) (*versions.Lock, error) {
	cache := gitcache.New(GitDir(opts.CacheDir))
	cache.Offline = opts.Offline
	cache.Log = opts.log()
	cache.Progress = opts.Progress

	wants := reposOf(s)
	locked := make([]versions.LockedRepo, len(wants))
	errs := make([]error, len(wants))
	sem := make(chan struct{}, opts.jobs())
	var wg sync.WaitGroup
	for i, w := range wants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := cache.Resolve(ctx, w.repo.Repo, w.repo.Ref, w.repo.Commit)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", w.label, err)
				return
			}
			locked[i] = versions.LockedRepo{
				Repo:        versions.RedactURL(w.repo.Repo),
				Ref:         w.repo.Ref,
				ResolvedRef: res.Ref,
				Commit:      res.Commit,
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
		l.CustomNodes = append(l.CustomNodes, versions.LockedNode{Name: n.Name, LockedRepo: locked[i+1]})
	}
	return l, nil
}

// PlanRepos describes what ResolveRepos would do, from the mirrors as they
// are now, without fetching or writing anything.
func PlanRepos(s *versions.Spec, opts Options) []string {
	cache := gitcache.New(GitDir(opts.CacheDir))
	var lines []string
	for _, w := range reposOf(s) {
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
