package resolve

import (
	"context"
	"fmt"
	"regexp"

	"github.com/comfy-image/comfy-image/internal/parallel"
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/versions"
)

var fullCommit = regexp.MustCompile(`^[0-9a-f]{40}$`)

// movableModel reports whether m's content can move under the same spec:
// an hf:// source whose revision is a branch or tag (not a commit) and
// whose sha256 the spec does not pin.
func movableModel(m versions.Model) bool {
	src, err := versions.ParseSource(m.Source)
	return err == nil && src.Scheme == "hf" && m.SHA256 == "" && !fullCommit.MatchString(src.Revision)
}

// named reports whether WithUpdate names model m.
func (o options) named(m versions.Model) bool {
	return len(o.update) > 0 && o.moves(m.Name, m.Dest())
}

// resolveModels resolves the revision of movable models afresh (one HEAD
// each, in parallel), as refs are: a pin whose content the branch no
// longer holds is replaced by the new sha256, size and revision (the file
// is fetched by the next realize or build and checked against them). A
// hub that cannot be asked leaves the pin, with a warning; for a model
// WithUpdate names, that is an error, and one not pinned yet is pinned. A
// named model whose content cannot move (a commit or sha256 pin) keeps
// its pin; one from another source keeps it too, and is checked when it is
// next downloaded.
//
// A file:// model the spec does not pin is pinned by the lock to the bytes
// it had when first read; WithUpdate naming it reads the file again (the
// way to take an edited file).
func (o options) resolveModels(ctx context.Context, s *versions.Spec, l *versions.Lock) error {
	type job struct {
		m      versions.Model
		pinned bool
		lm     versions.LockedModel
		local  bool // a file:// model to read again
	}
	f := models.ForSpec(s, models.Setup{CacheDir: o.cacheDir, Offline: o.offline, Log: o.log, LookupEnv: o.lookupEnv})
	var jobs []job
	for _, m := range s.Models {
		lm, pinned := models.LockedFor(l, m)
		_, local := f.LocalPath(models.RequestFor(m))
		switch {
		case local && m.SHA256 == "" && o.named(m):
			jobs = append(jobs, job{m, pinned, lm, true}) // a read, no server: offline too
		case o.offline && movableModel(m) && o.named(m):
			return fmt.Errorf("--update %s: --offline cannot ask the hub for its current revision; run without --offline", orDest(m))
		case o.offline && movableModel(m): // nothing is asked of the hub offline
		case movableModel(m) && o.moves(m.Name, m.Dest()) && (pinned || o.named(m)):
			jobs = append(jobs, job{m, pinned, lm, false})
		case o.named(m) && !movableModel(m) && pinned:
			fmt.Fprintf(o.log, "model %s: its content is pinned (a commit, a sha256 or a source that is not a Hugging Face branch); keeping sha256 %s\n", m.Dest(), lm.SHA256)
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	got := make([]versions.LockedModel, len(jobs))
	// Each: a model whose revision cannot be asked for keeps its pin (or,
	// named, fails the resolution); the others still move.
	err := parallel.Each(ctx, len(jobs), o.jobs, func(ctx context.Context, k int) error {
		j := jobs[k]
		got[k] = j.lm
		if j.local {
			res, err := f.ReadLocal(ctx, models.RequestFor(j.m))
			if err != nil {
				return fmt.Errorf("--update %s: %w", j.m.Name, err)
			}
			got[k] = models.LocalLockedModel(j.m, res.SHA256, res.Size)
			return nil
		}
		rev, sha, size, err := f.Current(ctx, models.RequestFor(j.m))
		switch {
		case err != nil && o.named(j.m):
			return fmt.Errorf("--update %s: cannot ask for its current revision: %w", j.m.Name, err)
		case err != nil:
			fmt.Fprintf(o.log, "warning: model %s: cannot ask for its current revision (%v); keeping the locked sha256 %s\n", j.m.Dest(), err, j.lm.SHA256)
		case !j.pinned || sha != j.lm.SHA256:
			got[k] = versions.LockedModel{Name: j.m.Name, Source: j.m.Source, Dest: j.m.Dest(), Revision: rev, Size: size, SHA256: sha}
		}
		return nil
	})
	if err != nil {
		return err
	}
	byDest := map[string]versions.LockedModel{}
	for _, lm := range l.Models {
		byDest[lm.Dest] = lm
	}
	for k, j := range jobs {
		if got[k].SHA256 != "" {
			byDest[j.m.Dest()] = got[k]
		}
	}
	// In spec order, as realize and build record them.
	l.Models = []versions.LockedModel{}
	for _, m := range s.Models {
		if lm, ok := byDest[m.Dest()]; ok && lm.Source == m.Source {
			l.Models = append(l.Models, lm)
		}
	}
	return nil
}

// orDest is a model's name, else its destination.
func orDest(m versions.Model) string {
	if m.Name != "" {
		return m.Name
	}
	return m.Dest()
}
