// Package gitcache keeps bare mirrors of git repositories under
// <cache>/git/<host>/<path>.git, made and fetched with go-git and never
// checked out, and resolves branches, tags and commits against them.
package gitcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/gofrs/flock"

	"github.com/comfy-image/comfy-image/internal/repourl"
)

// Cache is a folder of bare mirrors.
type Cache struct {
	// Dir is the folder holding the mirrors (<cache root>/git).
	Dir string
	// Offline resolves from the mirrors alone; nothing is fetched.
	Offline bool
	// Log receives one line per fetch (nil: discarded).
	Log io.Writer
	// LookupEnv expands ${VAR} in a repo URL's credentials at fetch time
	// (nil: os.LookupEnv).
	LookupEnv func(string) (string, bool)

	mu      sync.Mutex
	fetched map[string]bool
}

// New returns a cache of mirrors under dir.
func New(dir string) *Cache {
	return &Cache{Dir: dir}
}

// Folder is the folder of bare mirrors inside the cache root cacheDir.
func Folder(cacheDir string) string { return filepath.Join(cacheDir, "git") }

// Resolved is a repository reference resolved to a commit.
type Resolved struct {
	Commit string
	// Ref is the full ref the commit came from (refs/heads/main,
	// refs/tags/v1); empty when the spec named a commit.
	Ref string
}

var scpLike = regexp.MustCompile(`^([A-Za-z0-9._-]+)@([A-Za-z0-9.-]+):(.+)$`)

// MirrorPath is where the mirror of repo lives: <dir>/<host>/<path>.git.
// file:// repositories go under <dir>/file/<absolute path>.git.
func (c *Cache) MirrorPath(repo string) (string, error) {
	host, p, err := splitRepo(repo)
	if err != nil {
		return "", err
	}
	p = strings.TrimSuffix(strings.Trim(path.Clean("/"+p), "/"), ".git")
	if p == "" || host == "" {
		return "", fmt.Errorf("repo %q: cannot name a mirror for it", repourl.Redact(repo))
	}
	return filepath.Join(c.Dir, host, filepath.FromSlash(p)+".git"), nil
}

func splitRepo(repo string) (host, p string, err error) {
	if m := scpLike.FindStringSubmatch(repo); m != nil {
		return strings.ToLower(m[2]), m[3], nil
	}
	u, err := repourl.Parse(repo)
	if err != nil {
		return "", "", fmt.Errorf("repo %q: %w", repourl.Redact(repo), err)
	}
	if u.Scheme == "file" {
		return "file", u.Path, nil
	}
	host = strings.ToLower(u.Hostname())
	if port := u.Port(); port != "" {
		host += "_" + port
	}
	return host, u.Path, nil
}

// Resolve brings the mirror of repo up to date (unless offline) and
// resolves commit, else ref (a branch or tag; annotated tags peel to their
// commit), else the remote's default branch.
func (c *Cache) Resolve(ctx context.Context, repo, ref, commit string) (Resolved, error) {
	dir, err := c.MirrorPath(repo)
	if err != nil {
		return Resolved{}, err
	}
	lock, err := c.lockMirror(ctx, dir, !c.Offline)
	if err != nil {
		return Resolved{}, err
	}
	defer lock.Unlock()
	if err := c.repairOrName(repo, dir); err != nil {
		return Resolved{}, err
	}
	if !c.Offline {
		if err := c.sync(ctx, repo, dir); err != nil {
			return Resolved{}, err
		}
	}
	r, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return Resolved{}, fmt.Errorf("repo %s: no mirror in the cache (%s); run once without --offline", repourl.Redact(repo), dir)
	}
	if err != nil {
		return Resolved{}, fmt.Errorf("repo %s: open mirror %s: %w", repourl.Redact(repo), dir, err)
	}
	res, err := resolveIn(r, ref, commit)
	if err != nil {
		return Resolved{}, fmt.Errorf("repo %s: %w", repourl.Redact(repo), err)
	}
	return res, nil
}

// Open opens an existing mirror for reading (checkouts read objects from it).
func (c *Cache) Open(repo string) (*git.Repository, error) {
	dir, err := c.MirrorPath(repo)
	if err != nil {
		return nil, err
	}
	if err := checkPacks(dir); err != nil {
		return nil, fmt.Errorf("repo %s: %w", repourl.Redact(repo), err)
	}
	r, err := git.PlainOpen(dir)
	if err != nil {
		return nil, fmt.Errorf("repo %s: open mirror %s: %w", repourl.Redact(repo), dir, err)
	}
	return r, nil
}

// lockMirror takes the per-mirror file lock: exclusive to create or fetch,
// shared to read, so two processes never write one mirror at once.
func (c *Cache) lockMirror(ctx context.Context, dir string, exclusive bool) (*flock.Flock, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	fl := flock.New(dir + ".lock")
	var err error
	if exclusive {
		_, err = fl.TryLockContext(ctx, 50*time.Millisecond)
	} else {
		_, err = fl.TryRLockContext(ctx, 50*time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("lock mirror %s: %w", dir, err)
	}
	return fl, nil
}

var mirrorRefSpecs = []config.RefSpec{
	"+refs/heads/*:refs/heads/*",
	"+refs/tags/*:refs/tags/*",
}

// sync creates or fetches the mirror. It runs at most once per repo per
// process. A new mirror is built in a temporary folder and renamed into
// place, so a killed clone never leaves a half mirror behind.
func (c *Cache) sync(ctx context.Context, repo, dir string) error {
	c.mu.Lock()
	if c.fetched == nil {
		c.fetched = map[string]bool{}
	}
	done := c.fetched[dir]
	c.mu.Unlock()
	if done {
		return nil
	}
	start := time.Now()
	shown := repourl.Redact(repo)
	r, err := git.PlainOpen(dir)
	fresh := errors.Is(err, git.ErrRepositoryNotExists)
	work := dir
	switch {
	case fresh:
		work = fmt.Sprintf("%s.tmp-%d", dir, os.Getpid())
		os.RemoveAll(work)
		c.logf("cloning %s", shown)
		r, err = git.PlainInit(work, true)
		if err == nil {
			_, err = r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{repourl.Redact(repo)}, Fetch: mirrorRefSpecs})
		}
		if err != nil {
			os.RemoveAll(work)
			return fmt.Errorf("repo %s: create mirror: %w", shown, err)
		}
	case err != nil:
		return fmt.Errorf("repo %s: open mirror %s: %w", shown, dir, err)
	default:
		c.logf("checking %s", shown)
	}
	fetched, err := c.fetch(ctx, r, repo)
	if err != nil {
		if fresh {
			os.RemoveAll(work)
		}
		return err
	}
	if fresh {
		if err := os.Rename(work, dir); err != nil {
			os.RemoveAll(work)
			return fmt.Errorf("repo %s: place mirror: %w", shown, err)
		}
	}
	switch {
	case fresh:
		c.logf("cloned %s (%.1fs)", shown, time.Since(start).Seconds())
	case fetched:
		c.logf("%s fetched (%.1fs)", shown, time.Since(start).Seconds())
	default:
		c.logf("%s: the mirror has every listed commit, nothing fetched (%.1fs)", shown, time.Since(start).Seconds())
	}
	c.mu.Lock()
	c.fetched[dir] = true
	c.mu.Unlock()
	return nil
}

// fetch lists the remote's refs, fetches branches and tags, records the
// remote's default branch as the mirror's HEAD, and prunes refs the remote
// no longer has (a mirror mirrors).
//
// When every listed commit is already in the mirror nothing is fetched: an
// unchanged repository costs one ref listing.
func (c *Cache) fetch(ctx context.Context, r *git.Repository, repo string) (fetched bool, err error) {
	shown := repourl.Redact(repo)
	if err := storeWithoutCredentials(r, repo); err != nil {
		return false, fmt.Errorf("repo %s: %w", shown, err)
	}
	remote, err := r.Remote("origin")
	if err != nil {
		return false, fmt.Errorf("repo %s: %w", shown, err)
	}
	auth, err := c.credentials(repo)
	if err != nil {
		return false, err
	}
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return false, listError(err, repo)
	}
	if haveAll(r, refs) {
		return false, mirrorRefs(r, refs)
	}
	err = remote.FetchContext(ctx, &git.FetchOptions{
		RefSpecs: mirrorRefSpecs,
		Auth:     auth,
		Tags:     git.NoTags,
		Force:    true,
		// No Progress: git's own text of parallel fetches would
		// interleave on the screen; Log says when each starts and ends.
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return false, fmt.Errorf("repo %s: fetch: %s%s", shown, redactErr(err, repo), authHint(err, repo))
	}
	return true, mirrorRefs(r, refs)
}

// haveAll reports whether the mirror already holds the object every
// listed branch and tag points at. Objects only enter a mirror by a fetch,
// which brings their whole history, so nothing would be missing.
func haveAll(r *git.Repository, remoteRefs []*plumbing.Reference) bool {
	for _, ref := range remoteRefs {
		n := ref.Name()
		if ref.Type() != plumbing.HashReference || !(n.IsBranch() || n.IsTag()) {
			continue
		}
		if r.Storer.HasEncodedObject(ref.Hash()) != nil {
			return false
		}
	}
	return true
}

// mirrorRefs makes the mirror's branches and tags those of the listing:
// listed ones set (the fetch already wrote them; after a skipped fetch they
// may have moved to a commit the mirror holds), others removed.
func mirrorRefs(r *git.Repository, remoteRefs []*plumbing.Reference) error {
	want := map[plumbing.ReferenceName]bool{}
	for _, ref := range remoteRefs {
		want[ref.Name()] = true
		if n := ref.Name(); ref.Type() == plumbing.HashReference && (n.IsBranch() || n.IsTag()) {
			if cur, err := r.Storer.Reference(n); err != nil || cur.Hash() != ref.Hash() {
				if err := r.Storer.SetReference(plumbing.NewHashReference(n, ref.Hash())); err != nil {
					return err
				}
			}
		}
		if ref.Name() == plumbing.HEAD && ref.Type() == plumbing.SymbolicReference {
			head := plumbing.NewSymbolicReference(plumbing.HEAD, ref.Target())
			if err := r.Storer.SetReference(head); err != nil {
				return err
			}
		}
	}
	iter, err := r.References()
	if err != nil {
		return err
	}
	var stale []plumbing.ReferenceName
	_ = iter.ForEach(func(ref *plumbing.Reference) error {
		n := ref.Name()
		if (n.IsBranch() || n.IsTag()) && !want[n] {
			stale = append(stale, n)
		}
		return nil
	})
	for _, n := range stale {
		if err := r.Storer.RemoveReference(n); err != nil {
			return err
		}
	}
	return nil
}

// credentials are the user and password of a repo URL
// (https://user:token@host/..., ${VAR} expanded from the environment),
// handed to the transport at fetch time only: the mirror's config never
// holds them. ssh URLs use the ssh agent or a key file (sshAuth).
func (c *Cache) credentials(repo string) (transport.AuthMethod, error) {
	if isSSH(repo) {
		return sshAuth(repo)
	}
	u, err := repourl.Parse(repo)
	if err != nil || u.User == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, nil
	}
	lookup := c.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	user, pass, err := repourl.ExpandUserinfo(u, lookup)
	if err != nil {
		return nil, err
	}
	return &githttp.BasicAuth{Username: user, Password: pass}, nil
}

// authHint tells what to set when the server refused the request for
// want of credentials (401) or refused the ones given (403).
func authHint(err error, repo string) string {
	if !errors.Is(err, transport.ErrAuthenticationRequired) && !errors.Is(err, transport.ErrAuthorizationFailed) {
		return ""
	}
	if refs := repourl.Refs(repo); len(refs) > 0 {
		return fmt.Sprintf(" (the server refused the credentials from ${%s}; set %s to a token with read access to this repository)", refs[len(refs)-1], refs[len(refs)-1])
	}
	if isSSH(repo) {
		return " (the server refused the ssh key; load one with access into the ssh agent, or name its file in " + SSHKeyEnv + ")"
	}
	return " (a private repository: give a token in the URL from a variable, e.g. https://x-access-token:${GH_TOKEN}@host/org/repo, and set GH_TOKEN)"
}

// storeWithoutCredentials makes the mirror's origin the repo URL without
// its userinfo, also in mirrors written before credentials were kept out.
func storeWithoutCredentials(r *git.Repository, repo string) error {
	cfg, err := r.Config()
	if err != nil {
		return err
	}
	origin, ok := cfg.Remotes["origin"]
	want := repourl.Redact(repo)
	if !ok || (len(origin.URLs) == 1 && origin.URLs[0] == want) {
		return nil
	}
	origin.URLs = []string{want}
	return r.SetConfig(cfg)
}

// redactErr keeps credentials embedded in a repo URL out of error text.
func redactErr(err error, repo string) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if red := repourl.Redact(repo); red != repo {
		msg = strings.ReplaceAll(msg, repo, red)
	}
	return msg
}

func (c *Cache) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", args...)
	}
}

var hexCommit = regexp.MustCompile(`^[0-9a-f]{7,40}$`)

func resolveIn(r *git.Repository, ref, commit string) (Resolved, error) {
	if commit != "" {
		h, err := findCommit(r, commit)
		if err != nil {
			return Resolved{}, fmt.Errorf("commit %s: %w", commit, err)
		}
		return Resolved{Commit: h.String()}, nil
	}
	if ref == "" {
		head, err := r.Storer.Reference(plumbing.HEAD)
		if err != nil {
			return Resolved{}, fmt.Errorf("default branch (HEAD): not in the mirror: %w", err)
		}
		ref = head.Target().String()
		if head.Type() == plumbing.HashReference {
			return Resolved{Commit: head.Hash().String(), Ref: "HEAD"}, nil
		}
	}
	// git rev-parse order: refs/<ref>, refs/tags/<ref>, refs/heads/<ref>.
	for _, name := range []plumbing.ReferenceName{
		plumbing.ReferenceName(ref),
		plumbing.ReferenceName("refs/" + ref),
		plumbing.NewTagReferenceName(ref),
		plumbing.NewBranchReferenceName(ref),
	} {
		if !strings.HasPrefix(name.String(), "refs/") {
			continue
		}
		got, err := r.Storer.Reference(name)
		if err != nil {
			continue
		}
		h, err := peel(r, got.Hash())
		if err != nil {
			return Resolved{}, fmt.Errorf("ref %s: %w", ref, err)
		}
		return Resolved{Commit: h.String(), Ref: name.String()}, nil
	}
	if hexCommit.MatchString(ref) {
		if h, err := findCommit(r, ref); err == nil {
			return Resolved{Commit: h.String()}, nil
		}
	}
	return Resolved{}, fmt.Errorf("ref %s: no such branch or tag", ref)
}

// peel follows annotated tags down to the commit they name.
func peel(r *git.Repository, h plumbing.Hash) (plumbing.Hash, error) {
	for range 10 {
		tag, err := r.TagObject(h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			break
		}
		if err != nil {
			return h, err
		}
		h = tag.Target
	}
	if _, err := r.CommitObject(h); err != nil {
		return h, fmt.Errorf("%s is not a commit: %w", h, err)
	}
	return h, nil
}

func findCommit(r *git.Repository, commit string) (plumbing.Hash, error) {
	if len(commit) == 40 {
		h := plumbing.NewHash(commit)
		if _, err := r.CommitObject(h); err != nil {
			return h, errors.New("not found in the mirror (not on any branch or tag of the remote?)")
		}
		return h, nil
	}
	var found []plumbing.Hash
	iter, err := r.CommitObjects()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	_ = iter.ForEach(func(c *object.Commit) error {
		if strings.HasPrefix(c.Hash.String(), commit) {
			found = append(found, c.Hash)
		}
		return nil
	})
	switch len(found) {
	case 0:
		return plumbing.ZeroHash, errors.New("not found in the mirror (not on any branch or tag of the remote?)")
	case 1:
		return found[0], nil
	}
	return plumbing.ZeroHash, fmt.Errorf("ambiguous: %d commits start with it", len(found))
}

// Peek resolves against the mirror as it is, without fetching, locking or
// writing anything (for --dry-run). ok is false when there is no mirror yet.
func (c *Cache) Peek(repo, ref, commit string) (res Resolved, ok bool, err error) {
	dir, err := c.MirrorPath(repo)
	if err != nil {
		return Resolved{}, false, err
	}
	r, err := git.PlainOpen(dir)
	if err != nil {
		return Resolved{}, false, nil
	}
	res, err = resolveIn(r, ref, commit)
	return res, true, err
}

// Lookup resolves what Resolve would resolve online, with one listing of
// the remote's refs and nothing else: no object is fetched and nothing is
// written (no mirror, no lock file), for a dry run. A ref (or, without one,
// the remote's default branch) is looked up in the listing, an annotated
// tag by its peeled commit. A commit is used as given when it is a full
// hash; a short one must be in the mirror. InMirror tells whether the
// mirror already holds the commit (else a build fetches it first).
func (c *Cache) Lookup(ctx context.Context, repo, ref, commit string) (res Resolved, inMirror bool, err error) {
	shown := repourl.Redact(repo)
	if commit != "" {
		return c.lookupCommit(repo, commit)
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{shown}})
	auth, err := c.credentials(repo)
	if err != nil {
		return Resolved{}, false, err
	}
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
	if err != nil {
		return Resolved{}, false, listError(err, repo)
	}
	res, err = resolveListed(refs, ref)
	if err != nil {
		return Resolved{}, false, fmt.Errorf("repo %s: %w", shown, err)
	}
	if r, err := c.Open(repo); err == nil {
		if h, err := peel(r, plumbing.NewHash(res.Commit)); err == nil {
			return Resolved{Commit: h.String(), Ref: res.Ref}, true, nil
		}
	}
	return res, false, nil
}

// lookupCommit is a commit the spec pins, as Resolve would use it.
func (c *Cache) lookupCommit(repo, commit string) (Resolved, bool, error) {
	if res, ok, err := c.Peek(repo, "", commit); ok && err == nil {
		return res, true, nil
	}
	if len(commit) == 40 && hexCommit.MatchString(commit) {
		return Resolved{Commit: commit}, false, nil
	}
	return Resolved{}, false, fmt.Errorf("repo %s: commit %s: not in the mirror, and a short commit cannot be looked up without fetching", repourl.Redact(repo), commit)
}

// resolveListed finds ref (or the default branch) in a listing of the
// remote's refs, in git rev-parse order as resolveIn does; an annotated
// tag resolves to its peeled commit ("<tag>^{}").
func resolveListed(refs []*plumbing.Reference, ref string) (Resolved, error) {
	byName := map[plumbing.ReferenceName]*plumbing.Reference{}
	for _, r := range refs {
		byName[r.Name()] = r
	}
	if ref == "" {
		head, ok := byName[plumbing.HEAD]
		switch {
		case !ok:
			return Resolved{}, errors.New("default branch (HEAD): the remote does not list it")
		case head.Type() == plumbing.HashReference:
			return Resolved{Commit: head.Hash().String(), Ref: "HEAD"}, nil
		}
		ref = head.Target().String()
	}
	for _, name := range []plumbing.ReferenceName{
		plumbing.ReferenceName(ref),
		plumbing.ReferenceName("refs/" + ref),
		plumbing.NewTagReferenceName(ref),
		plumbing.NewBranchReferenceName(ref),
	} {
		got, ok := byName[name]
		if !strings.HasPrefix(name.String(), "refs/") || !ok || got.Type() != plumbing.HashReference {
			continue
		}
		if peeled, ok := byName[name+"^{}"]; ok {
			got = peeled
		}
		return Resolved{Commit: got.Hash().String(), Ref: name.String()}, nil
	}
	if hexCommit.MatchString(ref) {
		return Resolved{}, fmt.Errorf("ref %s: not a branch or tag; a commit named in \"ref\" is looked up in the mirror by a fetch, which a dry run does not do", ref)
	}
	return Resolved{}, fmt.Errorf("ref %s: no such branch or tag", ref)
}
