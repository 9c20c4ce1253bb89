package layers

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/comfy-image/comfy-image/internal/plainhttp"
	"github.com/comfy-image/comfy-image/internal/progress"
)

// OutputKind is the kind of place an image is read from or written to.
type OutputKind string

// The kinds of locations.
const (
	Registry  OutputKind = "registry" // a registry reference
	OCILayout OutputKind = "oci"      // oci:DIR[:TAG]
	Tarball   OutputKind = "tar"      // tar:FILE, docker-loadable
)

// Location is where an image is read from or written to: a registry
// reference, an OCI layout directory (oci:DIR[:TAG]) or a docker-loadable
// tarball (tar:FILE).
type Location struct {
	Kind OutputKind
	Ref  name.Reference
	Path string
	Tag  string
}

func (l Location) String() string {
	switch l.Kind {
	case OCILayout:
		return "oci:" + l.Path + ":" + l.Tag
	case Tarball:
		return "tar:" + l.Path
	}
	return l.Ref.String()
}

// ParseLocation parses oci:DIR[:TAG], tar:FILE or a registry reference.
// Plain HTTP is allowed only for registries on localhost or a loopback
// address, and those named in COMFY_INSECURE_REGISTRIES (plainhttp).
func ParseLocation(s string) (Location, error) {
	switch {
	case strings.HasPrefix(s, "oci:"):
		p, tag := strings.TrimPrefix(s, "oci:"), "latest"
		if i := strings.LastIndex(p, ":"); i > 0 && !strings.Contains(p[i:], "/") {
			p, tag = p[:i], p[i+1:]
		}
		if p == "" {
			return Location{}, fmt.Errorf("%q: expected oci:DIR[:TAG]", s)
		}
		return Location{Kind: OCILayout, Path: p, Tag: tag}, nil
	case strings.HasPrefix(s, "tar:"):
		p := strings.TrimPrefix(s, "tar:")
		if p == "" {
			return Location{}, fmt.Errorf("%q: expected tar:FILE", s)
		}
		return Location{Kind: Tarball, Path: p}, nil
	}
	var opts []name.Option
	if host := strings.SplitN(s, "/", 2)[0]; isLocalRegistry(s) || plainhttp.Permitted(host, plainhttp.Allowed()) {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(s, opts...)
	if err != nil {
		return Location{}, fmt.Errorf("%q: expected a registry reference, oci:DIR[:TAG] or tar:FILE: %w", s, err)
	}
	return Location{Kind: Registry, Ref: ref}, nil
}

func isLocalRegistry(ref string) bool {
	host := strings.SplitN(ref, "/", 2)[0]
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host == "::1"
}

// RemoteOptions are the go-containerregistry options for registry access:
// credentials from the Docker config and the standard keychain, and no
// plain HTTP but to this machine (plainhttp.Guard; a transport in extra
// replaces it: the probed ones are guarded too).
func RemoteOptions(extra ...remote.Option) []remote.Option {
	return append([]remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(plainhttp.Guard(remote.DefaultTransport, plainhttp.Allowed()))}, extra...)
}

// ReadImage opens the image at a location.
func ReadImage(loc Location, opts ...remote.Option) (v1.Image, error) {
	switch loc.Kind {
	case OCILayout:
		p, err := layout.FromPath(loc.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		idx, err := p.ImageIndex()
		if err != nil {
			return nil, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		var found []v1.Hash
		for _, d := range m.Manifests {
			if d.Annotations["org.opencontainers.image.ref.name"] == loc.Tag {
				found = append(found, d.Digest)
			}
		}
		if len(found) == 0 && len(m.Manifests) == 1 && loc.Tag == "latest" {
			found = append(found, m.Manifests[0].Digest)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: no image tagged %q in the layout", loc, loc.Tag)
		}
		return idx.Image(found[len(found)-1])
	case Tarball:
		tag, err := appTagIn(loc.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		img, err := tarball.ImageFromPath(loc.Path, tag)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		return img, nil
	}
	img, err := remote.Image(loc.Ref, RemoteOptions(opts...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	return img, nil
}

// appTagIn picks the image of a docker tarball that holds several (ours
// hold the app image and its models image): the first not tagged -models.
func appTagIn(file string) (*name.Tag, error) {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		return nil, err
	}
	if len(m) <= 1 {
		return nil, nil
	}
	for _, d := range m {
		for _, t := range d.RepoTags {
			if !strings.HasSuffix(t, "-models") {
				tag, err := name.NewTag(t)
				return &tag, err
			}
		}
	}
	return nil, fmt.Errorf("%s and none is an app image", progress.Count(len(m), "image", "images"))
}
