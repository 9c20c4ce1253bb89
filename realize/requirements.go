package realize

import (
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"

	"github.com/comfy-image/comfy-image/internal/reqfile"
	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/versions"
)

// requirementSources reads ComfyUI's and each node's requirements.txt (or
// pyproject.toml dependencies) from
// the checkouts through the one requirements parser, and the spec's
// python.requirements, in spec order, with python.overrides applied; it
// also returns what the overrides changed, for the lock.
func (r *realizer) requirementSources() ([]pyenv.Requirements, []versions.AppliedOverride, error) {
	return r.requirementsFrom(func(_ int, p part) (reqfile.Source, error) {
		return reqfile.DirSource(filepath.Join(r.target, filepath.FromSlash(p.key))), nil
	})
}

// requirementsFrom reads the requirements of each part from the source
// source gives it (a checkout, or a mirror's commit for a dry run).
func (r *realizer) requirementsFrom(source func(i int, p part) (reqfile.Source, error)) ([]pyenv.Requirements, []versions.AppliedOverride, error) {
	var reqs []pyenv.Requirements
	var applied []reqfile.Applied
	for i, p := range r.parts() {
		owner := "ComfyUI"
		if p.key != "ComfyUI" {
			owner = "node " + strings.TrimPrefix(p.key, "custom_nodes/")
		}
		src, err := source(i, p)
		if err != nil {
			return nil, nil, err
		}
		q, a, ok, err := pyenv.LoadRepo(src, owner, r.spec.Python.Overrides)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			reqs, applied = append(reqs, q), append(applied, a...)
		}
	}
	if len(r.spec.Python.Requirements) > 0 {
		q, a, err := pyenv.SpecLines(r.spec.Python.Requirements, r.spec.Python.Overrides)
		if err != nil {
			return nil, nil, err
		}
		reqs, applied = append(reqs, q), append(applied, a...)
	}
	return reqs, LockedOverrides(applied), nil
}

// LockedOverrides is the lock's record of the requirement lines that
// python.overrides replaced or dropped.
func LockedOverrides(applied []reqfile.Applied) []versions.AppliedOverride {
	var out []versions.AppliedOverride
	for _, a := range applied {
		out = append(out, versions.AppliedOverride{Owner: a.Owner, File: a.File, Line: a.Num, From: a.From, To: a.To})
	}
	return out
}

// planOverrides shows the spec's python.overrides in a dry run.
func (r *realizer) planOverrides(w io.Writer) {
	names := make([]string, 0, len(r.spec.Python.Overrides))
	for n := range r.spec.Python.Overrides {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if to := r.spec.Python.Overrides[n]; to != nil {
			fmt.Fprintf(w, "  override    %s -> %s (python.overrides, in every requirements file)\n", n, *to)
		} else {
			fmt.Fprintf(w, "  override    %s dropped (python.overrides, in every requirements file)\n", n)
		}
	}
}

// CommitSource reads the files of one commit of a mirror for the
// requirements parser: a symlink (or a path through one) is refused, and
// nothing outside the commit's tree can be named.
func CommitSource(r *git.Repository, commit string) reqfile.Source {
	return commitSource{r: r, commit: commit}
}

type commitSource struct {
	r      *git.Repository
	commit string
}

func (c commitSource) ReadFile(name string) ([]byte, error) {
	cm, err := c.r.CommitObject(plumbing.NewHash(c.commit))
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.commit, err)
	}
	tree, err := cm.Tree()
	if err != nil {
		return nil, err
	}
	parts := strings.Split(name, "/")
	for i, part := range parts {
		e, err := tree.FindEntry(part)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		switch {
		case e.Mode == filemode.Symlink:
			return nil, reqfile.ErrSymlink
		case i < len(parts)-1:
			if e.Mode != filemode.Dir {
				return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
			}
			if tree, err = c.r.TreeObject(e.Hash); err != nil {
				return nil, err
			}
		case e.Mode != filemode.Regular && e.Mode != filemode.Executable:
			return nil, fmt.Errorf("%s is not a regular file", name)
		default:
			blob, err := c.r.BlobObject(e.Hash)
			if err != nil {
				return nil, err
			}
			rd, err := blob.Reader()
			if err != nil {
				return nil, err
			}
			defer rd.Close()
			return io.ReadAll(rd)
		}
	}
	return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
}
