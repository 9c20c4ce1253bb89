package resolve

import "github.com/comfy-image/comfy-image/versions"

// Changes is what a resolution moved against the old lock, for review
// before it is deployed: the old and new commit of each repository, the
// version and sha256 of registry nodes, the sha256 and revision of models,
// the versions of the Python set; added and removed entries too.
type Changes struct {
	// First: there was no old lock; everything is new.
	First bool
	// Lines says one change each, as `comfy-image lock` prints them, e.g.
	// "node foo: <old commit> -> <new commit> (refs/heads/main)".
	Lines []string
}

// None reports whether the new lock pins what the old one did.
func (c Changes) None() bool { return !c.First && len(c.Lines) == 0 }

// changesBetween lists what fresh moved against old (nil: a first lock).
func changesBetween(old, fresh *versions.Lock) Changes {
	if old == nil {
		return Changes{First: true}
	}
	return Changes{Lines: fresh.Diff(old)}
}
