// Package realize lays a locked version out on disk (--target): the
// checkouts of the core and the nodes, the venv, the models and the
// configuration, fetching into the cache what they need. Resolving the
// spec into a lock is realize/resolve's job.
package realize

import (
	"os"
	"path/filepath"
)

// CacheDir picks the cache root: the flag, else $COMFY_CACHE, else
// ~/.comfy-cache.
func CacheDir(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("COMFY_CACHE"); env != "" {
		return env
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".comfy-cache")
	}
	return ".comfy-cache"
}
