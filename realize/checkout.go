package realize

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// treeEntry is a file of the commit being checked out.
type treeEntry struct {
	path string
	mode filemode.FileMode
	blob plumbing.Hash
}

// TreeFileEntry is a file of a commit, for packing it without a checkout.
type TreeFileEntry struct {
	Path       string
	Executable bool
	// Link is the target when the file is a symlink.
	Link string
	Size int64
	// Open reads the content from the mirror.
	Open func() (io.ReadCloser, error)
}

// CommitFiles lists the files of commit in the mirror r, the same set a
// checkout writes (submodules skipped), sorted by path.
func CommitFiles(r *git.Repository, commit string) ([]TreeFileEntry, error) {
	tree, err := commitTree(r, commit)
	if err != nil {
		return nil, err
	}
	out := make([]TreeFileEntry, 0, len(tree))
	for _, e := range tree {
		blob, err := r.BlobObject(e.blob)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.path, err)
		}
		fe := TreeFileEntry{Path: e.path, Executable: e.mode == filemode.Executable, Size: blob.Size, Open: blob.Reader}
		if e.mode == filemode.Symlink {
			rd, err := blob.Reader()
			if err != nil {
				return nil, err
			}
			target, err := io.ReadAll(rd)
			rd.Close()
			if err != nil {
				return nil, err
			}
			fe.Link, fe.Size, fe.Open = string(target), 0, nil
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

// commitTree lists the files of a commit; submodules (gitlinks) are skipped.
func commitTree(r *git.Repository, commit string) (map[string]treeEntry, error) {
	c, err := r.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", commit, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	out := map[string]treeEntry{}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch entry.Mode {
		case filemode.Regular, filemode.Deprecated, filemode.Executable, filemode.Symlink:
			out[name] = treeEntry{path: name, mode: entry.Mode, blob: entry.Hash}
		}
	}
	return out, nil
}

// CheckoutTree makes dir hold the files of commit (read from the mirror r),
// without a .git folder. prev is the state of the last checkout into dir
// (nil if none). Files the user added are kept; tracked files the user
// changed stop the checkout with a *ModifiedError unless force is set.
func CheckoutTree(r *git.Repository, commit, dir string, prev *Checkout, force bool) (*Checkout, error) {
	if prev != nil && prev.Commit == commit && prev.Pending == "" {
		if ok, err := unchanged(dir, prev); err != nil || ok {
			return prev, err
		}
	}
	want, err := commitTree(r, commit)
	if err != nil {
		return nil, err
	}
	interrupted := prev != nil && prev.Pending != ""
	var old map[string]TreeFile
	if prev != nil {
		old = prev.Files
	}
	if !force {
		if err := checkConflicts(dir, old, want, interrupted); err != nil {
			return nil, err
		}
	}
	next := &Checkout{Commit: commit, Files: map[string]TreeFile{}}
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		tf, err := writeEntry(r, dir, want[p])
		if err != nil {
			return nil, fmt.Errorf("checkout %s: %w", filepath.Join(dir, p), err)
		}
		next.Files[p] = tf
	}
	for p := range old {
		if _, keep := want[p]; !keep {
			full := filepath.Join(dir, filepath.FromSlash(p))
			if err := os.Remove(full); err != nil && !os.IsNotExist(err) {
				return nil, err
			}
			removeEmptyParents(dir, filepath.Dir(full))
		}
	}
	return next, nil
}

// unchanged reports whether every file of a finished checkout is still as
// written, restoring nothing; a stat match is enough, a mismatch is hashed.
func unchanged(dir string, c *Checkout) (bool, error) {
	for p, tf := range c.Files {
		same, err := fileMatches(filepath.Join(dir, filepath.FromSlash(p)), tf.Mode, plumbing.NewHash(tf.Blob), &tf)
		if err != nil || !same {
			return false, err
		}
	}
	return true, nil
}

// checkConflicts finds tracked files the user changed (any checkout would
// reset or delete them) and untracked files in the way of new ones.
func checkConflicts(dir string, old map[string]TreeFile, want map[string]treeEntry, interrupted bool) error {
	var changed []string
	for p, tf := range old {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if _, err := os.Lstat(full); os.IsNotExist(err) {
			continue // deleted by the user: restoring it loses nothing
		}
		same, err := fileMatches(full, tf.Mode, plumbing.NewHash(tf.Blob), &tf)
		if err != nil {
			return err
		}
		if !same {
			changed = append(changed, p)
		}
	}
	for p, w := range want {
		if _, tracked := old[p]; tracked || interrupted {
			continue
		}
		full := filepath.Join(dir, filepath.FromSlash(p))
		if _, err := os.Lstat(full); os.IsNotExist(err) {
			continue
		}
		same, err := fileMatches(full, uint32(w.mode), w.blob, nil)
		if err != nil {
			return err
		}
		if !same {
			changed = append(changed, p)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	sort.Strings(changed)
	return &ModifiedError{Dir: dir, Files: changed}
}

// fileMatches tells whether the file at full has the given mode and blob.
// With a recorded stat, equal size and mtime settle it without reading.
func fileMatches(full string, mode uint32, blob plumbing.Hash, rec *TreeFile) (bool, error) {
	fi, err := os.Lstat(full)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	isLink := filemode.FileMode(mode) == filemode.Symlink
	if isLink != (fi.Mode()&os.ModeSymlink != 0) {
		return false, nil
	}
	if !isLink && (fi.Mode()&0o111 != 0) != (filemode.FileMode(mode) == filemode.Executable) {
		return false, nil
	}
	if rec != nil && fi.Size() == rec.Size && fi.ModTime().UnixNano() == rec.MtimeNs {
		return true, nil
	}
	got, err := blobHash(full, fi)
	if err != nil {
		return false, err
	}
	return got == blob, nil
}

// blobHash is the git blob id of a file's content (a symlink's target).
func blobHash(full string, fi os.FileInfo) (plumbing.Hash, error) {
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(full)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		return plumbing.ComputeHash(plumbing.BlobObject, []byte(target)), nil
	}
	f, err := os.Open(full)
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

// writeEntry writes one file (or symlink) atomically unless it already
// holds the right content, and returns its record.
func writeEntry(r *git.Repository, dir string, e treeEntry) (TreeFile, error) {
	full := filepath.Join(dir, filepath.FromSlash(e.path))
	same, err := fileMatches(full, uint32(e.mode), e.blob, nil)
	if err != nil {
		return TreeFile{}, err
	}
	if !same {
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return TreeFile{}, err
		}
		blob, err := r.BlobObject(e.blob)
		if err != nil {
			return TreeFile{}, err
		}
		if err := writeBlob(full, e.mode, blob); err != nil {
			return TreeFile{}, err
		}
	}
	fi, err := os.Lstat(full)
	if err != nil {
		return TreeFile{}, err
	}
	return TreeFile{Mode: uint32(e.mode), Blob: e.blob.String(), Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}, nil
}

func writeBlob(full string, mode filemode.FileMode, blob *object.Blob) error {
	rd, err := blob.Reader()
	if err != nil {
		return err
	}
	defer rd.Close()
	tmp := filepath.Join(filepath.Dir(full), "."+filepath.Base(full)+".comfy-tmp")
	os.Remove(tmp)
	if mode == filemode.Symlink {
		target, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if err := os.Symlink(string(target), tmp); err != nil {
			return err
		}
	} else {
		perm := os.FileMode(0o644)
		if mode == filemode.Executable {
			perm = 0o755
		}
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, rd)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(tmp, perm) // umask may have cut the bits
		}
		if err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if fi, err := os.Lstat(full); err == nil && fi.IsDir() {
		if err := os.RemoveAll(full); err != nil {
			return err
		}
	}
	return os.Rename(tmp, full)
}

// removeEmptyParents removes dir and its parents up to root while empty.
func removeEmptyParents(root, dir string) {
	for dir != root && strings.HasPrefix(dir, root) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}
