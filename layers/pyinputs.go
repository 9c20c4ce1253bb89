package layers

import (
	"context"

	"github.com/comfy-image/comfy-image/internal/reqfile"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/realize/checkout"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

// requirementSource is one repository the image set's requirement lines
// come from, at its locked commit.
type requirementSource struct{ owner, repo, commit string }

// requirementSources are ComfyUI and every node, in the lock's order.
func (b *builder) requirementSources() []requirementSource {
	srcs := []requirementSource{{"ComfyUI", b.spec.Comfy.Repo, b.lock.Comfy.Commit}}
	for i, n := range b.lock.CustomNodes {
		srcs = append(srcs, requirementSource{"node " + n.Name, checkout.NodeRepo(b.spec.CustomNodes[i], n), n.Commit})
	}
	return srcs
}

// loadSource reads src's requirement lines from its mirror (no checkout)
// through the one requirements parser: no index option, local path,
// ${VAR} or symlink reaches pip; python.overrides applied. found is false
// when the commit has no requirements file.
func (b *builder) loadSource(ctx context.Context, git *gitcache.Cache, src requirementSource) (q pyenv.Requirements, rec versions.LockedRequirements, found bool, err error) {
	files, err := b.commitSource(ctx, git, src.owner, src.repo, src.commit)
	if err != nil {
		return q, rec, false, err
	}
	q, applied, found, err := pyenv.LoadRepo(files, src.owner, b.spec.Python.Overrides)
	if err != nil {
		return q, rec, false, err
	}
	q.Owner = src.owner
	return q, b.record(q, found, src.commit, applied), found, nil
}

// specRequirements are the spec's python.requirements (found false when
// it has none) and their record.
func (b *builder) specRequirements() (q pyenv.Requirements, rec versions.LockedRequirements, found bool, err error) {
	if len(b.spec.Python.Requirements) == 0 {
		return q, rec, false, nil
	}
	q, applied, err := pyenv.SpecLines(b.spec.Python.Requirements, b.spec.Python.Overrides)
	if err != nil {
		return q, rec, false, err
	}
	return q, b.record(q, true, "", applied), true, nil
}

func (b *builder) record(q pyenv.Requirements, found bool, commit string, applied []reqfile.Applied) versions.LockedRequirements {
	return resolve.Record(q, found, commit, realize.LockedOverrides(applied), b.spec.Python.Overrides)
}

// requirementRecords are the records of every source for the lock's
// commits: a record of the lock for the same commit, loaded with the same
// python.overrides, is reused; only the other sources (their commit moved,
// or they are new) are read from their mirrors, so a fresh runner fetches
// no mirror of an unchanged repository. read counts the sources read.
func (b *builder) requirementRecords(ctx context.Context, git *gitcache.Cache) (recs []versions.LockedRequirements, read int, err error) {
	prior := map[string]versions.LockedRequirements{}
	for _, r := range b.lock.Python.ImageRequirements {
		prior[r.Owner] = r
	}
	with := resolve.OverridesDigest(b.spec.Python.Overrides)
	for _, src := range b.requirementSources() {
		if r, ok := prior[src.owner]; ok && src.commit != "" && r.Commit == src.commit && r.OverridesDigest == with {
			recs = append(recs, r)
			continue
		}
		_, rec, _, err := b.loadSource(ctx, git, src)
		if err != nil {
			return nil, 0, err
		}
		recs, read = append(recs, rec), read+1
	}
	_, rec, found, err := b.specRequirements()
	if err != nil {
		return nil, 0, err
	}
	if found {
		recs = append(recs, rec)
	}
	return recs, read, nil
}

// appliedOverrides are the overrides the records' lines were changed by,
// in the records' order.
func appliedOverrides(recs []versions.LockedRequirements) []versions.AppliedOverride {
	var out []versions.AppliedOverride
	for _, r := range recs {
		out = append(out, r.Overrides...)
	}
	return out
}
