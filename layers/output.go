package layers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/realize"
)

// WriteOptions are the settings of writing a build's images.
type WriteOptions struct {
	// ModelsRef overrides where the models image goes (default: the app
	// reference's tag + "-models").
	ModelsRef string
	// Jobs bounds parallel layer uploads (0: 4).
	Jobs     int
	Reporter progress.Reporter
	Log      io.Writer
	// Transport is the HTTP transport for registries (nil: default).
	Transport http.RoundTripper
	// Names label layers by digest in progress output ("node gguf").
	Names map[string]string
}

func (o WriteOptions) jobs() int {
	if o.Jobs <= 0 {
		return 4
	}
	return o.Jobs
}

func (o WriteOptions) remote(ctx context.Context, extra ...remote.Option) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithJobs(o.jobs())}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	return RemoteOptions(append(opts, extra...)...)
}

// ModelsLocation is where the models image of app goes: REF-models for a
// registry, TAG-models in the same OCI layout, or the same tarball.
func ModelsLocation(app Location, override string) (Location, error) {
	if override != "" {
		return ParseLocation(override)
	}
	switch app.Kind {
	case "oci":
		return Location{Kind: "oci", Path: app.Path, Tag: app.Tag + "-models"}, nil
	case "tar":
		return app, nil
	}
	tag := "latest"
	if t, ok := app.Ref.(name.Tag); ok {
		tag = t.TagStr()
	}
	return ParseLocation(app.Ref.Context().Name() + ":" + tag + "-models")
}

// Write writes the app image (and the models image, when there is one) to
// every output location.
func Write(ctx context.Context, res *Result, outs []Location, versionID string, o WriteOptions) error {
	for _, out := range outs {
		modelsLoc, err := ModelsLocation(out, o.ModelsRef)
		if err != nil {
			return fmt.Errorf("--models-ref: %w", err)
		}
		if err := write(ctx, res.App, out, versionID, "", o); err != nil {
			return err
		}
		if res.Models == nil {
			continue
		}
		if out.Kind == "tar" && modelsLoc.Kind == "tar" && modelsLoc.Path == out.Path {
			if err := writeTar(out.Path, versionID, res.App, res.Models); err != nil {
				return err
			}
			fmt.Fprintf(o.Log, "wrote %s (app and models images)\n", out.Path)
			continue
		}
		if err := write(ctx, res.Models, modelsLoc, versionID, "-models", o); err != nil {
			return err
		}
	}
	return nil
}

func write(ctx context.Context, img v1.Image, loc Location, versionID, suffix string, o WriteOptions) error {
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	switch loc.Kind {
	case "oci":
		if err := writeLayout(loc, img); err != nil {
			return fmt.Errorf("%s: %w", loc, err)
		}
	case "tar":
		if err := writeTar(loc.Path, versionID, img, nil); err != nil {
			return fmt.Errorf("%s: %w", loc, err)
		}
	default:
		if err := push(ctx, img, loc, o); err != nil {
			return fmt.Errorf("push %s: %w", loc, err)
		}
	}
	fmt.Fprintf(o.Log, "wrote %s@%s\n", loc, digest)
	return nil
}

func writeLayout(loc Location, img v1.Image) error {
	p, err := layout.FromPath(loc.Path)
	if err != nil {
		if p, err = layout.Write(loc.Path, empty.Index); err != nil {
			return err
		}
	}
	return p.ReplaceImage(img, match.Name(loc.Tag),
		layout.WithAnnotations(map[string]string{specs.AnnotationRefName: loc.Tag}))
}

// writeTar writes a docker-loadable tarball tagged <id>:latest (and
// <id>:latest-models for the models image).
func writeTar(file, versionID string, app, models v1.Image) error {
	appTag, err := name.NewTag(strings.ToLower(versionID) + ":latest")
	if err != nil {
		return err
	}
	refs := map[name.Reference]v1.Image{appTag: app}
	if models != nil {
		modelsTag, err := name.NewTag(strings.ToLower(versionID) + ":latest-models")
		if err != nil {
			return err
		}
		refs[modelsTag] = models
	}
	tmp := file + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, file)
}

// push uploads img: blobs the registry has are skipped (HEAD first), the
// missing layers go up in parallel, each with its own progress, then the
// config and the manifest.
func push(ctx context.Context, img v1.Image, loc Location, o WriteOptions) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	rep := o.Reporter
	if rep == nil {
		rep = progress.Discard()
	}
	var missing []v1.Layer
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		has, err := BlobExists(ctx, loc.Ref.Context(), d, o.Transport)
		if err != nil {
			return err
		}
		if !has {
			missing = append(missing, l)
		}
	}
	fmt.Fprintf(o.Log, "push %s: %d of %d layers to upload\n", loc, len(missing), len(layers))
	errs := make([]error, len(missing))
	realize.Parallel(len(missing), o.jobs(), func(i int) {
		l := missing[i]
		d, _ := l.Digest()
		size, _ := l.Size()
		name := o.Names[d.String()]
		if name == "" {
			name = "base layer"
		}
		t := rep.Start(fmt.Sprintf("upload %s %s", name, shortDigest(d.String())), size)
		errs[i] = remote.WriteLayer(loc.Ref.Context(), &trackedLayer{Layer: l, t: t}, o.remote(ctx)...)
		t.Done(errs[i])
	})
	rep.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return remote.Write(loc.Ref, img, o.remote(ctx)...)
}

// trackedLayer reports the bytes read from its compressed stream.
type trackedLayer struct {
	v1.Layer
	t progress.Tracker
}

func (l *trackedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	l.t.SetCurrent(0)
	return trackedReader{rc, l.t}, nil
}

type trackedReader struct {
	io.ReadCloser
	t progress.Tracker
}

func (r trackedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.t.Add(int64(n))
	return n, err
}

// BlobExists asks a registry whether it has a blob (HEAD /v2/<repo>/blobs/<digest>).
func BlobExists(ctx context.Context, repo name.Repository, d v1.Hash, tr http.RoundTripper) (bool, error) {
	if tr == nil {
		tr = remote.DefaultTransport
	}
	auth, err := authn.DefaultKeychain.Resolve(repo.Registry)
	if err != nil {
		return false, err
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, tr, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return false, err
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return false, err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("HEAD %s: %s", u, resp.Status)
}
