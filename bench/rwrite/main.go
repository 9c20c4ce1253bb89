// Command rwrite is the benchmark's peer for request counts: it pushes one
// image of an OCI layout to a plain-HTTP registry with go-containerregistry's
// remote.Write and nothing else, so the registry's access log shows what a
// plain push of the same image costs.
//
// Usage: go run ./bench/rwrite LAYOUT TAG HOST/REPO:TAG
package main

import (
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: rwrite LAYOUT TAG HOST/REPO:TAG")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, "rwrite:", err)
		os.Exit(1)
	}
}

func run(dir, tag, dest string) error {
	img, err := imageByTag(dir, tag)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(dest, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(ref, img)
}

// imageByTag finds the image the layout's index names tag
// (org.opencontainers.image.ref.name, as skopeo writes it).
func imageByTag(dir, tag string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == tag {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("layout %s has no image tagged %q", dir, tag)
}
