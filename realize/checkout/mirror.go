package checkout

import (
	"context"
	"io"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/versions"
)

// NewGitCache is the cache of mirrors under the cache root cacheDir;
// offline, nothing is fetched; fetches are logged to log (nil: discarded).
func NewGitCache(cacheDir string, offline bool, log io.Writer) *gitcache.Cache {
	c := gitcache.New(gitcache.Folder(cacheDir))
	c.Offline = offline
	c.Log = log
	return c
}

// cacheRoot is the cache root holding the mirrors of c: the models' store
// (LFS objects) and the registry's zips live beside them.
func cacheRoot(c *gitcache.Cache) string { return filepath.Dir(c.Dir) }

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

// TreeOptions are the checkout options of a repository (node: the spec's
// node; the core is versions.Node{}): its submodules checked out (their
// mirrors opened and fetched through cache) unless the node sets
// submodules false, and its LFS objects fetched (into the models' store of
// the cache's root) when it sets lfs true.
func TreeOptions(ctx context.Context, cache *gitcache.Cache, repoURL string, node versions.Node) []CheckoutOption {
	var out []CheckoutOption
	if node.WantsSubmodules() {
		out = append(out, WithSubmodules(repoURL, func(repo, commit string) (*git.Repository, error) {
			return OpenMirror(ctx, cache, repo, commit)
		}))
	}
	if node.LFS {
		out = append(out, WithLFS(ctx, cacheRoot(cache), cache.Offline, repoURL))
	}
	return out
}
