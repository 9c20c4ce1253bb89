package materialize

import (
	"context"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DropCachedLayer drops the layer with digest d from the layer cache of
// cacheDir (see Cache.DropDigest) and reports whether anything was dropped.
func DropCachedLayer(ctx context.Context, cacheDir string, d v1.Hash) (bool, error) {
	n, err := Cache{Dir: filepath.Join(cacheDir, "layers")}.DropDigest(ctx, d)
	return n > 0, err
}
