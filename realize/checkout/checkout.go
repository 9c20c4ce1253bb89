// Package checkout reads a commit of a cached repository (a git mirror, or
// the repository unpacked from a Comfy Registry zip) as a tree, with its
// submodules, LFS objects and attributes, and writes it into a folder
// without touching what a user added there.
package checkout

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// TreeFile is one file a checkout wrote, with what it takes to tell later
// whether someone changed it: the git blob id, and size and mtime as a
// cheap first check.
type TreeFile struct {
	Mode    uint32 `json:"mode"`
	Blob    string `json:"blob"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
}

// Checkout is the state of one exported tree (the core or a node).
type Checkout struct {
	Commit string `json:"commit"`
	// Tree names what besides the commit's own tree was checked out
	// ("submodules"): the same commit with other options is another tree.
	Tree string `json:"tree,omitempty"`
	// Pending is the commit being written when a run stopped half-way; files
	// at its paths are ours to overwrite on the next run.
	Pending string              `json:"pending,omitempty"`
	Files   map[string]TreeFile `json:"files"`
}

// ModifiedError lists tracked files that someone changed since the last
// checkout and that the new checkout would overwrite or delete.
type ModifiedError struct {
	Dir   string
	Files []string
}

func (e *ModifiedError) Error() string {
	return fmt.Sprintf("%s: files changed since they were checked out, not overwriting them (use --force): %s",
		e.Dir, strings.Join(e.Files, ", "))
}

// InTheWayError lists files that are not from any checkout (the user
// added them) where the checkout must write or delete: they are never
// overwritten or deleted, --force or not.
type InTheWayError struct {
	Dir   string
	Files []string
}

func (e *InTheWayError) Error() string {
	return fmt.Sprintf("%s: files that are not from the checkout are in the way, never overwritten or deleted, even with --force (move them away): %s",
		e.Dir, strings.Join(e.Files, ", "))
}

// TreeError is a commit whose tree cannot be checked out safely: a crafted
// or broken repository. It is bad input (exit code 2).
type TreeError struct {
	Commit, Path, Reason string
}

func (e *TreeError) Error() string {
	return fmt.Sprintf("commit %s: tree entry %q: %s; refusing to check it out", e.Commit, e.Path, e.Reason)
}

// BadInput marks the error as bad input for the command's exit code.
func (e *TreeError) BadInput() bool { return true }

// treeEntry is a file of the commit being checked out.
type treeEntry struct {
	path string
	mode filemode.FileMode
	blob plumbing.Hash
	link string // a symlink's target
	// repo holds the blob: the node's mirror, or a submodule's.
	repo *git.Repository
	// eol converts line endings as .gitattributes ask; work and size are
	// then the id and size of the converted content.
	eol  eolAction
	work plumbing.Hash
	size int64
	// lfs is set for a Git LFS pointer file; lfsFile, when the object
	// is fetched, is its file in the store (written instead of the blob).
	lfs     *lfsPointer
	lfsFile string
}

// TreeFileEntry is a file of a commit, for packing it without a checkout.
type TreeFileEntry struct {
	Path       string
	Executable bool
	// Dir marks an empty folder: a submodule not checked out.
	Dir bool
	// Link is the target when the file is a symlink.
	Link string
	Size int64
	// Open reads the content from the mirror.
	Open func() (io.ReadCloser, error)
}

// CommitFiles lists the files of commit in the mirror r, the same set a
// checkout with the same options writes (submodules included with
// WithSubmodules, else their empty folders), sorted by path.
func CommitFiles(r *git.Repository, commit string, opts ...CheckoutOption) ([]TreeFileEntry, error) {
	cfg := newCheckoutConfig(opts)
	w, err := walkCommit(r, commit, cfg)
	if err != nil {
		return nil, err
	}
	tree := w.files
	out := make([]TreeFileEntry, 0, len(tree)+len(w.emptyDirs))
	for _, d := range w.emptyDirs {
		out = append(out, TreeFileEntry{Path: d, Dir: true})
	}
	for _, e := range tree {
		fe := TreeFileEntry{Path: e.path, Executable: e.mode == filemode.Executable, Link: e.link}
		if e.mode != filemode.Symlink {
			rd, size, err := e.content()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.path, err)
			}
			rd.Close()
			fe.Size = size
			fe.Open = func() (io.ReadCloser, error) {
				rd, _, err := e.content()
				return rd, err
			}
		}
		out = append(out, fe)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// CommitFile reads one file of a commit from the mirror; ok is false when
// the commit has no such file.
func CommitFile(r *git.Repository, commit, path string) (data []byte, ok bool, err error) {
	c, err := r.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, false, fmt.Errorf("commit %s: %w", commit, err)
	}
	f, err := c.File(path)
	if errors.Is(err, object.ErrFileNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	text, err := f.Contents()
	return []byte(text), err == nil, err
}

// walkTree reads the raw entries of one tree level (go-git's TreeWalker
// joins names, so "a/b" or ".." would be hidden from the checks). base is
// the path of the level in the checkout; gitlinks are collected in links.
func walkTree(r *git.Repository, commit string, tree *object.Tree, base string, out map[string]treeEntry, links *[]gitlink) error {
	seen := make(map[string]bool, len(tree.Entries))
	for _, e := range tree.Entries {
		p := e.Name
		if base != "" {
			p = base + "/" + e.Name
		}
		if reason := badEntryName(e.Name); reason != "" {
			return &TreeError{Commit: commit, Path: p, Reason: reason}
		}
		if seen[e.Name] {
			return &TreeError{Commit: commit, Path: p, Reason: "two entries have this name"}
		}
		seen[e.Name] = true
		switch e.Mode {
		case filemode.Dir:
			sub, err := r.TreeObject(e.Hash)
			if err != nil {
				return &TreeError{Commit: commit, Path: p, Reason: err.Error()}
			}
			if err := walkTree(r, commit, sub, p, out, links); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			out[p] = treeEntry{path: p, mode: e.Mode, blob: e.Hash, repo: r}
		case filemode.Symlink:
			target, err := linkTarget(r, e.Hash)
			if err != nil {
				return &TreeError{Commit: commit, Path: p, Reason: err.Error()}
			}
			out[p] = treeEntry{path: p, mode: e.Mode, blob: e.Hash, link: target, repo: r}
		case filemode.Submodule:
			*links = append(*links, gitlink{path: p, commit: e.Hash.String()})
		default:
			return &TreeError{Commit: commit, Path: p, Reason: fmt.Sprintf("unknown file mode %o", uint32(e.Mode))}
		}
	}
	return nil
}

// badEntryName says what is wrong with one tree entry name, or "".
func badEntryName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case strings.ContainsRune(name, '/'):
		return `the name holds "/"`
	case strings.ContainsRune(name, 0):
		return "the name holds a NUL byte"
	case name == "." || name == "..":
		return "the name is . or .."
	case strings.EqualFold(name, ".git"):
		return "a .git entry"
	}
	return ""
}

// linkTarget reads a symlink's target: not empty, no NUL, a sane length.
func linkTarget(r *git.Repository, h plumbing.Hash) (string, error) {
	blob, err := r.BlobObject(h)
	if err != nil {
		return "", err
	}
	if blob.Size == 0 || blob.Size > 4096 {
		return "", fmt.Errorf("symlink target of %d bytes", blob.Size)
	}
	rd, err := blob.Reader()
	if err != nil {
		return "", err
	}
	defer rd.Close()
	target, err := io.ReadAll(rd)
	if err != nil {
		return "", err
	}
	if strings.ContainsRune(string(target), 0) {
		return "", errors.New("the symlink target holds a NUL byte")
	}
	return string(target), nil
}

// CheckoutOption changes how CheckoutTree works.
type CheckoutOption func(*checkoutConfig)

type checkoutConfig struct {
	beforeWrite func() error
	without     []string
	// submodules, when set, checks submodules out (else their folders
	// are left empty, as git clone without --recurse-submodules does).
	submodules *submoduleSource
	// lfs, when set, writes LFS objects instead of their pointers.
	lfs *lfsSource
	// repoURL is the URL of the repository checked out.
	repoURL string
}

// Without leaves the folder dir (a slash path in the commit) out of the
// checkout: its tracked files are not written, and removed when an earlier
// checkout wrote them. The core's models folder is left out this way, as
// ComfyUI/models is a link to the models folder (see ModelsLayout).
func Without(dir string) CheckoutOption {
	return func(c *checkoutConfig) { c.without = append(c.without, dir) }
}

// excluded reports whether p is in a folder left out with Without.
func (c *checkoutConfig) excluded(p string) bool {
	for _, d := range c.without {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// drop removes the left-out files from a commit's file set.
func (c *checkoutConfig) drop(files map[string]treeEntry) {
	for p := range files {
		if c.excluded(p) {
			delete(files, p)
		}
	}
}

// holdsExcluded reports whether an earlier checkout wrote left-out files.
func (c *checkoutConfig) holdsExcluded(prev *Checkout) bool {
	for p := range prev.Files {
		if c.excluded(p) {
			return true
		}
	}
	return false
}

func newCheckoutConfig(opts []CheckoutOption) *checkoutConfig {
	var cfg checkoutConfig
	for _, o := range opts {
		o(&cfg)
	}
	return &cfg
}

// treeName names what the options add to a commit's tree (Checkout.Tree).
func (c *checkoutConfig) treeName() string {
	var parts []string
	if c.submodules != nil {
		parts = append(parts, "submodules")
	}
	if c.lfs != nil {
		parts = append(parts, "lfs")
	}
	return strings.Join(parts, "+")
}

// BeforeWrite calls f once every check passed, before the first change on
// disk: the caller records its pending work there, never for a refused
// checkout. An error from f stops the checkout.
func BeforeWrite(f func() error) CheckoutOption {
	return func(c *checkoutConfig) { c.beforeWrite = f }
}

// CheckoutTree makes dir hold the files of commit (read from the mirror r),
// without a .git folder. prev is the state of the last checkout into dir
// (nil if none). Files the user added are kept and never overwritten or
// deleted (a *InTheWayError); tracked files the user changed stop the
// checkout with a *ModifiedError unless force is set. Nothing below dir is
// followed when it is a symlink: links the commit holds are created as
// links, and replaced, never written through.
func CheckoutTree(r *git.Repository, commit, dir string, prev *Checkout, force bool, opts ...CheckoutOption) (*Checkout, error) {
	cfg := newCheckoutConfig(opts)
	if prev.Done(commit, opts...) && !cfg.holdsExcluded(prev) {
		if ok, err := Unchanged(dir, prev); err != nil || ok {
			return prev, err
		}
	}
	w, err := walkCommit(r, commit, cfg)
	if err != nil {
		return nil, err
	}
	want := w.files
	cfg.drop(want)
	var old map[string]TreeFile
	var pending map[string]treeEntry
	if prev != nil {
		old = prev.Files
		if prev.Pending != "" && prev.Pending != commit {
			// Unreadable: nothing is taken as ours.
			if pw, err := walkCommit(r, prev.Pending, cfg); err == nil {
				pending = pw.files
				cfg.drop(pending)
			}
		}
	}
	t, err := openTree(dir, true)
	if err != nil {
		return nil, err
	}
	defer t.close()
	if err := t.check(old, want, pending, force); err != nil {
		return nil, err
	}
	if cfg.beforeWrite != nil {
		if err := cfg.beforeWrite(); err != nil {
			return nil, err
		}
	}
	if err := t.removeDropped(old, want); err != nil {
		return nil, fmt.Errorf("checkout %s: %w", dir, err)
	}
	next := &Checkout{Commit: commit, Tree: cfg.treeName(), Files: make(map[string]TreeFile, len(want))}
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		tf, err := t.write(want[p])
		if err != nil {
			return nil, fmt.Errorf("checkout %s: %s: %w", dir, p, err)
		}
		next.Files[p] = tf
	}
	for _, d := range w.emptyDirs {
		if err := t.mkdirAll(d); err != nil {
			return nil, fmt.Errorf("checkout %s: %s: %w", dir, d, err)
		}
	}
	return next, nil
}

// Done reports whether c is a finished checkout of commit made with the
// same options (nil c: no).
func (c *Checkout) Done(commit string, opts ...CheckoutOption) bool {
	return c != nil && c.Commit == commit && c.Pending == "" && c.Tree == newCheckoutConfig(opts).treeName()
}

// Unchanged reports whether every file of a finished checkout is still as
// written, restoring nothing; a stat match is enough, a mismatch is hashed.
func Unchanged(dir string, c *Checkout) (bool, error) {
	t, err := openTree(dir, false)
	if err != nil {
		return false, nil
	}
	defer t.close()
	for p, tf := range c.Files {
		same, err := t.matches(p, tf.Mode, plumbing.NewHash(tf.Blob), &tf)
		if err != nil || !same {
			return false, err
		}
	}
	return true, nil
}

// fsTree reads and writes below one folder and never follows a symlink
// there: each parent of a path is checked to be a real folder (Lstat, not
// Stat), and os.Root keeps whatever races the checks inside the folder.
type fsTree struct {
	dir  string
	root *os.Root
	dirs map[string]bool // parents known to be real folders
}

// openTree opens dir, which must be a real folder (made when create is set
// and it is missing).
func openTree(dir string, create bool) (*fsTree, error) {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case !fi.IsDir():
		return nil, fmt.Errorf("%s is a %s, not a folder; refusing to check out through it", dir, KindOf(fi))
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &fsTree{dir: dir, root: root, dirs: map[string]bool{".": true}}, nil
}

func (t *fsTree) close() { t.root.Close() }

// KindOf names what a path is, for messages.
func KindOf(fi os.FileInfo) string {
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return "symlink"
	case fi.Mode().IsRegular():
		return "file"
	case fi.IsDir():
		return "folder"
	}
	return "special file"
}

// isDir reports whether p and all its parents are real folders.
func (t *fsTree) isDir(p string) bool {
	if t.dirs[p] {
		return true
	}
	if !t.isDir(path.Dir(p)) {
		return false
	}
	fi, err := t.root.Lstat(p)
	ok := err == nil && fi.IsDir()
	if ok {
		t.dirs[p] = true
	}
	return ok
}

// lstat is Lstat of p, reached through real folders only: a path under a
// symlink or a file does not exist.
func (t *fsTree) lstat(p string) (os.FileInfo, error) {
	if !t.isDir(path.Dir(p)) {
		return nil, fs.ErrNotExist
	}
	return t.root.Lstat(p)
}

// blocker is the first parent of p that exists and is not a real folder.
func (t *fsTree) blocker(p string) (string, bool) {
	dir := path.Dir(p)
	if dir == "." {
		return "", false
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		q := strings.Join(parts[:i+1], "/")
		if t.isDir(q) {
			continue
		}
		if _, err := t.root.Lstat(q); err != nil {
			return "", false // missing: made as a folder
		}
		return q, true
	}
	return "", false
}

// matches tells whether p has the given mode and blob. With a recorded
// stat, equal size and mtime settle it without reading.
func (t *fsTree) matches(p string, mode uint32, blob plumbing.Hash, rec *TreeFile) (bool, error) {
	fi, err := t.lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	isLink := filemode.FileMode(mode) == filemode.Symlink
	if isLink != (fi.Mode()&os.ModeSymlink != 0) || (!isLink && !fi.Mode().IsRegular()) {
		return false, nil
	}
	if !isLink && (fi.Mode()&0o111 != 0) != (filemode.FileMode(mode) == filemode.Executable) {
		return false, nil
	}
	if rec != nil && fi.Size() == rec.Size && fi.ModTime().UnixNano() == rec.MtimeNs {
		return true, nil
	}
	got, err := t.blobHash(p, fi)
	if err != nil {
		return false, err
	}
	return got == blob, nil
}

// blobHash is the git blob id of a file's content (a symlink's target).
func (t *fsTree) blobHash(p string, fi os.FileInfo) (plumbing.Hash, error) {
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := t.root.Readlink(p)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		return plumbing.ComputeHash(plumbing.BlobObject, []byte(target)), nil
	}
	f, err := t.root.OpenFile(p, os.O_RDONLY|NoFollow, 0)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	defer f.Close()
	h := plumbing.NewHasher(plumbing.BlobObject, fi.Size())
	if _, err := io.Copy(h, f); err != nil {
		return plumbing.ZeroHash, err
	}
	return h.Sum(), nil
}

// check finds, before anything changes, tracked files the user changed
// (any checkout would reset or delete them: refused unless force) and
// files the user added where the checkout writes or deletes (always
// refused). A file equal to the new one, or to the one an interrupted
// checkout of the pending commit wrote, is taken as ours.
func (t *fsTree) check(old map[string]TreeFile, want, pending map[string]treeEntry, force bool) error {
	var changed []string
	inWay := map[string]bool{}
	for p, tf := range old {
		fi, err := t.lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted by the user: restoring it loses nothing
		}
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if _, keep := want[p]; keep {
				t.userFilesUnder(p, old, inWay)
			}
			continue
		}
		same, err := t.matches(p, tf.Mode, plumbing.NewHash(tf.Blob), &tf)
		if err == nil && !same {
			// Already the new file, or what an interrupted checkout of
			// the pending commit wrote there: nothing of the user's.
			if w, ok := want[p]; ok {
				same, err = t.ours(p, w, pending)
			} else if pw, ok := pending[p]; ok {
				same, err = t.matches(p, uint32(pw.mode), pw.id(), nil)
			}
		}
		if err != nil {
			return err
		}
		if !same {
			changed = append(changed, p)
		}
	}
	for p, w := range want {
		if b, blocked := t.blocker(p); blocked {
			if _, tracked := old[b]; !tracked {
				inWay[b] = true
			}
			continue // a tracked file where a folder goes is removed first
		}
		fi, err := t.lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.IsDir() {
			t.userFilesUnder(p, old, inWay)
			continue
		}
		if _, tracked := old[p]; tracked {
			continue
		}
		if ok, err := t.ours(p, w, pending); err != nil || !ok {
			if err != nil {
				return err
			}
			inWay[p] = true
		}
	}
	var errs []error
	if len(inWay) > 0 {
		errs = append(errs, &InTheWayError{Dir: t.dir, Files: sortedKeys(inWay)})
	}
	if len(changed) > 0 && !force {
		sort.Strings(changed)
		errs = append(errs, &ModifiedError{Dir: t.dir, Files: changed})
	}
	return errors.Join(errs...)
}

// ours tells whether an untracked file at p is the new one, or the one an
// interrupted checkout of the pending commit wrote.
func (t *fsTree) ours(p string, w treeEntry, pending map[string]treeEntry) (bool, error) {
	if same, err := t.matches(p, uint32(w.mode), w.id(), nil); err != nil || same {
		return same, err
	}
	if pw, ok := pending[p]; ok {
		return t.matches(p, uint32(pw.mode), pw.id(), nil)
	}
	return false, nil
}

// userFilesUnder adds to inWay every file below the real folder p that no
// checkout wrote (a folder where the new commit puts a file).
func (t *fsTree) userFilesUnder(p string, old map[string]TreeFile, inWay map[string]bool) {
	fs.WalkDir(t.root.FS(), p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			inWay[q] = true
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if _, tracked := old[q]; !tracked {
			inWay[q] = true
		}
		return nil
	})
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// removeDropped deletes the tracked files the new commit no longer has
// (files and links only: a folder that took a file's place is the user's),
// deepest first, and then their folders left empty. Type changes are
// removals too: a link that becomes a folder is removed before the folder
// is made, so nothing is ever written through it.
func (t *fsTree) removeDropped(old map[string]TreeFile, want map[string]treeEntry) error {
	var drop []string
	for p := range old {
		if _, keep := want[p]; !keep {
			drop = append(drop, p)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(drop)))
	for _, p := range drop {
		fi, err := t.lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.IsDir() {
			continue
		}
		if err := t.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		t.removeEmptyParents(path.Dir(p))
	}
	return nil
}

// removeEmptyParents removes p and its parents while they are empty.
func (t *fsTree) removeEmptyParents(p string) {
	for ; p != "."; p = path.Dir(p) {
		if !t.isDir(p) || t.root.Remove(p) != nil {
			return
		}
		t.forget(p)
	}
}

// forget drops p and what is below it from the known folders.
func (t *fsTree) forget(p string) {
	for d := range t.dirs {
		if d == p || strings.HasPrefix(d, p+"/") {
			delete(t.dirs, d)
		}
	}
}

// mkdirAll makes p and its parents as real folders.
func (t *fsTree) mkdirAll(p string) error {
	if p == "." || t.isDir(p) {
		return nil
	}
	if err := t.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	if err := t.root.Mkdir(p, 0o755); err != nil {
		return err // a file or link in the way: check let none through
	}
	t.dirs[p] = true
	return nil
}

// write writes one file (or symlink) atomically unless it already holds
// the right content, and returns its record.
func (t *fsTree) write(e treeEntry) (TreeFile, error) {
	same, err := t.matches(e.path, uint32(e.mode), e.id(), nil)
	if err != nil {
		return TreeFile{}, err
	}
	if !same {
		if err := t.mkdirAll(path.Dir(e.path)); err != nil {
			return TreeFile{}, err
		}
		if err := t.writeBlob(e); err != nil {
			return TreeFile{}, err
		}
	}
	fi, err := t.lstat(e.path)
	if err != nil {
		return TreeFile{}, err
	}
	return TreeFile{Mode: uint32(e.mode), Blob: e.id().String(), Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}, nil
}

func (t *fsTree) writeBlob(e treeEntry) error {
	tmp := path.Join(path.Dir(e.path), "."+path.Base(e.path)+".comfy-tmp")
	t.root.Remove(tmp) // left by a killed run
	if e.mode == filemode.Symlink {
		if err := t.root.Symlink(e.link, tmp); err != nil {
			return err
		}
	} else if err := t.writeFile(e, tmp); err != nil {
		t.root.Remove(tmp)
		return err
	}
	// Empty folders where the file goes (what is left of an old folder
	// whose files were removed; check refused any holding a file).
	if fi, err := t.lstat(e.path); err == nil && fi.IsDir() {
		if err := t.removeEmptyFolders(e.path); err != nil {
			t.root.Remove(tmp)
			return err
		}
	}
	return t.root.Rename(tmp, e.path)
}

func (t *fsTree) writeFile(e treeEntry, tmp string) error {
	rd, _, err := e.content()
	if err != nil {
		return err
	}
	defer rd.Close()
	perm := os.FileMode(0o644)
	if e.mode == filemode.Executable {
		perm = 0o755
	}
	f, err := t.root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY|NoFollow, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, rd)
	if err == nil {
		err = f.Chmod(perm) // umask may have cut the bits
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeEmptyFolders removes the folder p when it holds only folders.
func (t *fsTree) removeEmptyFolders(p string) error {
	var dirs []string
	err := fs.WalkDir(t.root.FS(), p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return fmt.Errorf("%s is in the way and not from the checkout", q)
		}
		dirs = append(dirs, q)
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := t.root.Remove(dirs[i]); err != nil {
			return err
		}
	}
	t.forget(p)
	return nil
}
