package checkout

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/versions"
)

// maxSubmoduleDepth bounds nesting: a repository that names itself (or a
// cycle of them) as a submodule is refused, not followed forever.
const maxSubmoduleDepth = 8

// MirrorOpener opens the mirror of repo holding commit, fetching it when
// the mirror lacks the commit (OpenMirror bound to a cache and a context).
type MirrorOpener func(repo, commit string) (*git.Repository, error)

// submoduleSource is where submodules come from: the URL of the checked
// out repository (relative submodule URLs resolve against it) and the way
// to open mirrors.
type submoduleSource struct {
	parentURL string
	open      MirrorOpener
}

// WithSubmodules checks submodules out, recursively, as git clone
// --recurse-submodules does: each gitlink's URL comes from the .gitmodules
// of its commit (relative URLs resolved against parentURL), is checked like
// a spec's repo URL, and its mirror is opened through open. Without it a
// submodule is an empty folder, as git clone without --recurse-submodules
// leaves it.
func WithSubmodules(parentURL string, open MirrorOpener) CheckoutOption {
	return func(c *checkoutConfig) {
		c.submodules = &submoduleSource{parentURL: parentURL, open: open}
		c.repoURL = parentURL
	}
}

// gitlink is a submodule entry of a tree: a path and the commit it pins.
type gitlink struct {
	path, commit string
}

// SubmoduleError is a submodule that cannot be checked out: unreachable,
// missing from .gitmodules, or with a URL or path that is refused.
type SubmoduleError struct {
	Path, URL string
	Err       error
	// Bad is set when the repository's own data is refused (bad input).
	Bad bool
}

func (e *SubmoduleError) Error() string {
	if e.URL == "" {
		return fmt.Sprintf("submodule %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("submodule %s (%s): %v", e.Path, repourl.Redact(e.URL), e.Err)
}

func (e *SubmoduleError) Unwrap() error { return e.Err }

// BadInput marks a refused .gitmodules entry as bad input (exit code 2).
func (e *SubmoduleError) BadInput() bool { return e.Bad }

// commitWalk is what a checkout writes for one commit: its files (and
// those of its submodules), the empty folders of submodules left out, and
// the submodules checked out.
type commitWalk struct {
	cfg       *checkoutConfig
	files     map[string]treeEntry
	emptyDirs []string
	subs      []versions.LockedSubmodule
	// lfsPointers are the files left as Git LFS pointer text.
	lfsPointers []string
}

// walkCommit lists what a checkout of commit writes. A tree that could
// write outside its folder or clash with itself is refused with a
// *TreeError naming the entry; a submodule that cannot be reached or is
// refused, with a *SubmoduleError.
func walkCommit(r *git.Repository, commit string, cfg *checkoutConfig) (*commitWalk, error) {
	w := &commitWalk{cfg: cfg, files: map[string]treeEntry{}}
	if err := w.repo(r, cfg.repoURL, commit, "", 0); err != nil {
		return nil, err
	}
	sort.Strings(w.emptyDirs)
	sort.Slice(w.subs, func(i, j int) bool { return w.subs[i].Path < w.subs[j].Path })
	return w, nil
}

// repo adds the tree of commit in r below prefix, then its submodules.
func (w *commitWalk) repo(r *git.Repository, repoURL, commit, prefix string, depth int) error {
	c, err := r.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return fmt.Errorf("commit %s: %w", commit, err)
	}
	tree, err := r.TreeObject(c.TreeHash)
	if err != nil {
		return &TreeError{Commit: commit, Path: prefix, Reason: err.Error()}
	}
	var links []gitlink
	mine := map[string]treeEntry{}
	if err := walkTree(r, commit, tree, prefix, mine, &links); err != nil {
		return err
	}
	// .gitattributes apply within their own repository, not in its
	// submodules.
	ptrs, err := applyAttrs(mine, prefix)
	if err != nil {
		return &TreeError{Commit: commit, Path: prefix, Reason: err.Error()}
	}
	if w.cfg.lfs != nil && len(ptrs) > 0 {
		if err := w.cfg.lfs.smudge(repoURL, mine, ptrs); err != nil {
			return err
		}
	} else {
		w.lfsPointers = append(w.lfsPointers, ptrs...)
	}
	for p, e := range mine {
		w.files[p] = e
	}
	if len(links) == 0 {
		return nil
	}
	if w.cfg.submodules == nil {
		for _, l := range links {
			w.emptyDirs = append(w.emptyDirs, l.path)
		}
		return nil
	}
	if depth >= maxSubmoduleDepth {
		return &SubmoduleError{Path: links[0].path, Bad: true, Err: fmt.Errorf("submodules nested more than %d deep (a cycle?)", maxSubmoduleDepth)}
	}
	urls, err := gitmodulesURLs(tree)
	if err != nil {
		return &SubmoduleError{Path: path.Join(prefix, ".gitmodules"), Bad: true, Err: err}
	}
	for _, l := range links {
		rel := strings.TrimPrefix(strings.TrimPrefix(l.path, prefix), "/")
		raw, ok := urls[rel]
		if !ok {
			return &SubmoduleError{Path: l.path, Bad: true, Err: errors.New("no url for this path in .gitmodules")}
		}
		subURL, err := SubmoduleURL(repoURL, raw)
		if err != nil {
			return &SubmoduleError{Path: l.path, URL: raw, Bad: true, Err: err}
		}
		sr, err := w.cfg.submodules.open(subURL, l.commit)
		if err != nil {
			return &SubmoduleError{Path: l.path, URL: subURL, Err: err}
		}
		w.subs = append(w.subs, versions.LockedSubmodule{Path: l.path, URL: repourl.Redact(subURL), Commit: l.commit})
		if err := w.repo(sr, subURL, l.commit, l.path, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// gitmodulesURLs maps each submodule path of .gitmodules to its URL.
func gitmodulesURLs(tree *object.Tree) (map[string]string, error) {
	f, err := tree.File(".gitmodules")
	if errors.Is(err, object.ErrFileNotFound) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	text, err := f.Contents()
	if err != nil {
		return nil, err
	}
	mods := config.NewModules()
	if err := mods.Unmarshal([]byte(text)); err != nil {
		return nil, fmt.Errorf("not a valid .gitmodules: %w", err)
	}
	out := map[string]string{}
	for _, m := range mods.Submodules {
		out[path.Clean(m.Path)] = m.URL
	}
	return out, nil
}

// SubmoduleURL resolves a .gitmodules URL against the URL of the
// repository holding it, as git does: "./x" and "../x" are relative to the
// parent's URL taken as a folder. The result must be a URL a spec may name,
// and a file:// submodule is allowed only under a file:// parent (a
// remote repository must not make us read the machine's files).
func SubmoduleURL(parent, sub string) (string, error) {
	resolved := sub
	if strings.HasPrefix(sub, "./") || strings.HasPrefix(sub, "../") {
		// The parent's credentials may be a ${VAR} the fetch expands, which
		// url.Parse refuses as userinfo: resolve without them and put them
		// back as written (a relative URL stays on the parent's host).
		userinfo, bare := splitUserinfo(parent)
		u, err := url.Parse(bare)
		if err != nil || u.Scheme == "" {
			return "", fmt.Errorf("relative url %q under %q, which is not a URL it can be resolved against", sub, repourl.Redact(parent))
		}
		base := strings.TrimSuffix(u.Path, "/")
		rest := sub
		for {
			switch {
			case strings.HasPrefix(rest, "./"):
				rest = rest[2:]
				continue
			case strings.HasPrefix(rest, "../"):
				rest = rest[3:]
				if base == "" || base == "/" {
					return "", fmt.Errorf("relative url %q climbs above the host of %q", sub, repourl.Redact(parent))
				}
				base = path.Dir(base)
				continue
			}
			break
		}
		u.Path = strings.TrimSuffix(base, "/") + "/" + rest
		u.RawPath = ""
		resolved = u.String()
		if userinfo != "" {
			scheme, rest, _ := strings.Cut(resolved, "://")
			resolved = scheme + "://" + userinfo + "@" + rest
		}
	}
	if msg := versions.CheckRepoURL(resolved); msg != "" {
		return "", errors.New(msg)
	}
	if strings.HasPrefix(strings.ToLower(resolved), "file:") && !strings.HasPrefix(strings.ToLower(parent), "file:") {
		return "", fmt.Errorf("a file:// submodule under a repository that is not file:// (%s); refused", repourl.Redact(parent))
	}
	return resolved, nil
}

// splitUserinfo cuts "user:token@" out of scheme://user:token@host/path,
// returning it (without the "@") and the URL without it.
func splitUserinfo(rawURL string) (userinfo, bare string) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return "", rawURL
	}
	authority, p, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return "", rawURL
	}
	bare = scheme + "://" + authority[at+1:]
	if strings.Contains(rest, "/") {
		bare += "/" + p
	}
	return authority[:at], bare
}

// TreeInfo is what a checkout of a commit brings besides its own files.
type TreeInfo struct {
	// Submodules are those checked out (URLs without credentials).
	Submodules []versions.LockedSubmodule
	// SkippedSubmodules are left as empty folders (no WithSubmodules).
	SkippedSubmodules []string
	// LFSPointers are files written as Git LFS pointer text (no WithLFS).
	LFSPointers []string
}

// InspectTree walks what a checkout of commit with opts writes, opening
// (and fetching) each submodule's mirror and each LFS object: an
// unreachable one is an error here, at lock time.
func InspectTree(r *git.Repository, commit string, opts ...CheckoutOption) (TreeInfo, error) {
	w, err := walkCommit(r, commit, newCheckoutConfig(opts))
	if err != nil {
		return TreeInfo{}, err
	}
	sort.Strings(w.lfsPointers)
	return TreeInfo{Submodules: w.subs, SkippedSubmodules: w.emptyDirs, LFSPointers: w.lfsPointers}, nil
}
