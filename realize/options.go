package realize

import (
	"io"

	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

// Options are the settings shared by the steps of the pipeline.
type Options struct {
	CacheDir string
	Offline  bool
	DryRun   bool
	// Log receives plain progress lines.
	Log io.Writer
	// Jobs bounds parallel fetches (0: parallel.Fetches).
	Jobs int
	// LockFile is where the lock is read and written ("": the cache's
	// resolved/<version_id>.lock.json), e.g. versions/<id>.lock.json
	// committed next to the spec.
	LockFile string
}

// LockPath is the lock file of version id under these options.
func (o Options) LockPath(id string) string {
	if o.LockFile != "" {
		return o.LockFile
	}
	return versions.LockPath(o.CacheDir, id)
}

// ResolveOptions are the settings of a resolution (realize/resolve) under
// these options: the cache, offline, the log and the parallel fetches.
func (o Options) ResolveOptions() []resolve.Option {
	return []resolve.Option{resolve.WithCacheDir(o.CacheDir), resolve.WithOffline(o.Offline), resolve.WithLog(o.Log), resolve.WithJobs(o.Jobs)}
}

func (o Options) log() io.Writer {
	if o.Log == nil {
		return io.Discard
	}
	return o.Log
}
