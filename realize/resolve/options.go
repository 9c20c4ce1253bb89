package resolve

import (
	"io"
	"os"

	"github.com/comfy-image/comfy-image/internal/parallel"
	"github.com/comfy-image/comfy-image/internal/streams"
)

// Option sets how a resolution runs.
type Option func(*options)

// options are the settings of a resolution; defaults (set in one place) are
// those of defaults().
type options struct {
	cacheDir   string
	offline    bool
	locked     bool
	update     []string
	log        io.Writer
	jobs       int
	lookupEnv  func(string) (string, bool)
	skipModels bool
	lockName   string
	readOnly   bool
}

func defaults() options {
	return options{
		log:       io.Discard,
		jobs:      parallel.Fetches,
		lookupEnv: os.LookupEnv,
		lockName:  "the lock",
	}
}

func makeOptions(opts []Option) options {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	o.log = streams.Locked(o.log) // repositories and models are resolved in parallel
	return o
}

// WithCacheDir is the cache root holding the git mirrors, the registry's
// zips and the models' store (default: the working folder).
func WithCacheDir(dir string) Option { return func(o *options) { o.cacheDir = dir } }

// WithOffline resolves from what the cache holds: refs from the mirrors as
// they are, no registry question, no model revision asked for. (InFile,
// as realize and build use it, takes the recorded lock as the truth then,
// as with WithLocked.)
func WithOffline(offline bool) Option { return func(o *options) { o.offline = offline } }

// WithLocked makes the old lock the truth: nothing is resolved, and an old
// lock that is missing or does not cover the spec is an error naming what
// it lacks.
func WithLocked(locked bool) Option { return func(o *options) { o.locked = locked } }

// WithUpdate moves only what names name ("comfy", node names, model names
// or destinations, "python") and keeps the rest of the old lock; without
// names (the default) everything is resolved afresh.
func WithUpdate(names ...string) Option {
	return func(o *options) { o.update = append(o.update, names...) }
}

// WithLog receives warnings and the changes InFile makes (default:
// discarded).
func WithLog(w io.Writer) Option {
	return func(o *options) {
		if w != nil {
			o.log = w
		}
	}
}

// WithJobs bounds the repositories and models asked in parallel (0 or
// less: parallel.Fetches).
func WithJobs(n int) Option {
	return func(o *options) { o.jobs = parallel.Limit(n, parallel.Fetches) }
}

// WithLookupEnv resolves the spec's ${VAR} (HF_TOKEN, HF_ENDPOINT...) to ask
// the hub for models' current revisions (default: os.LookupEnv).
func WithLookupEnv(lookup func(string) (string, bool)) Option {
	return func(o *options) {
		if lookup != nil {
			o.lookupEnv = lookup
		}
	}
}

// WithReadOnly resolves as an online resolution would, for a dry run,
// from one ref listing per repository (in parallel) and nothing else: no
// object is fetched and nothing is written (no mirror, no registry zip, no
// lock). A commit the mirror lacks is locked all the same (the build
// fetches it); its submodules are those old recorded for the same commit,
// and a registry node old does not pin is locked without a commit (its zip
// is not fetched).
func WithReadOnly(readOnly bool) Option { return func(o *options) { o.readOnly = readOnly } }

// WithoutModels leaves the models' pins as they are, and lets a locked
// resolution accept a lock that pins no model.
func WithoutModels(skip bool) Option { return func(o *options) { o.skipModels = skip } }

// WithLockName names the old lock in errors (its file; default "the lock").
func WithLockName(name string) Option {
	return func(o *options) {
		if name != "" {
			o.lockName = name
		}
	}
}

// moves reports whether a resolution moves what names name (any of them).
func (o options) moves(names ...string) bool {
	if len(o.update) == 0 {
		return true
	}
	for _, u := range o.update {
		for _, n := range names {
			if u == n {
				return true
			}
		}
	}
	return false
}
