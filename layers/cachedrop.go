package layers

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/gofrs/flock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DropDigest removes the cached layer whose blob has digest d, so the next
// build packs it again: its bytes were found damaged (they do not hash to
// d, or a registry answered DIGEST_INVALID). It reports whether an entry
// was dropped.
//
// Minimal stand-in until the layer cache gets its own verified drop
// (issue 8 point 5); it takes the entry's lock as Build does.
func (c Cache) DropDigest(d v1.Hash) (bool, error) {
	metas, err := filepath.Glob(filepath.Join(c.Dir, "*", "*.json"))
	if err != nil {
		return false, err
	}
	dropped := false
	for _, meta := range metas {
		data, err := os.ReadFile(meta)
		if err != nil {
			continue
		}
		var info Info
		if json.Unmarshal(data, &info) != nil || info.Digest != d {
			continue
		}
		blob := meta[:len(meta)-len(".json")] + ".blob"
		lock := flock.New(blob + ".lock")
		if err := lock.Lock(); err != nil {
			return dropped, err
		}
		// The metadata goes first: without it Lookup misses, whatever
		// remains of the blob.
		err = os.Remove(meta)
		if err == nil || os.IsNotExist(err) {
			err = os.Remove(blob)
		}
		lock.Unlock()
		if err != nil && !os.IsNotExist(err) {
			return dropped, err
		}
		dropped = true
	}
	return dropped, nil
}

// DropCachedLayer drops the layer with digest d from the layer cache of
// cacheDir (see Cache.DropDigest).
func DropCachedLayer(cacheDir string, d v1.Hash) (bool, error) {
	return Cache{Dir: filepath.Join(cacheDir, "layers")}.DropDigest(d)
}
