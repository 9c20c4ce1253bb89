package realize

import (
	"context"
	"fmt"
	"os"
	"regexp"

	"github.com/comfy-image/comfy-image/internal/parallel"
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

// refreshModels resolves the revision of every movable model the lock pins
// afresh (one HEAD each, in parallel), as refs are: a pin whose content
// the branch no longer holds is replaced by the new sha256, size and
// revision (the file is fetched by the next realize or build and checked
// against them). A hub that cannot be asked leaves the pin, with a warning.
func refreshModels(ctx context.Context, s *versions.Spec, opts Options, l *versions.Lock, res Resolution) {
	type job struct {
		i  int
		m  versions.Model
		lm versions.LockedModel
	}
	var jobs []job
	for i, lm := range l.Models {
		for _, m := range s.Models {
			if lm.Source == m.Source && lm.Dest == m.Dest() && movableModel(m) && res.moves(m.Name, m.Dest()) {
				jobs = append(jobs, job{i, m, lm})
			}
		}
	}
	if len(jobs) == 0 {
		return
	}
	lookup := res.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	f := NewFetcher(s, opts, lookup, nil, 0)
	// Each: a model whose revision cannot be asked for keeps its pin; the
	// others still move.
	_ = parallel.Each(ctx, len(jobs), opts.jobs(), func(ctx context.Context, k int) error {
		j := jobs[k]
		rev, sha, size, err := f.Current(ctx, ModelRequest(j.m))
		switch {
		case err != nil:
			fmt.Fprintf(opts.log(), "warning: model %s: cannot ask for its current revision (%v); keeping the locked sha256 %s\n", j.m.Dest(), err, j.lm.SHA256)
		case sha != j.lm.SHA256:
			l.Models[j.i] = versions.LockedModel{Name: j.m.Name, Source: j.m.Source, Dest: j.m.Dest(), Revision: rev, Size: size, SHA256: sha}
		}
		return nil
	})
}
