// Package realize fetches what a version needs into the cache (git mirrors,
// models, wheels), resolves a spec into a lock, and lays a version out.
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

// GitDir is the folder of bare mirrors inside a cache root.
func GitDir(cacheDir string) string { return filepath.Join(cacheDir, "git") }
