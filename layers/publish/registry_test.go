package publish_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/publish"
)

// fastRetries keep the fault tests short; the policy (5 attempts) is the
// default's.
var fastRetries = publish.WithRetryBackoff(remote.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 5})

func repo(t *testing.T, host, path string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(host+"/"+path, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func randomImage(t *testing.T, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(2048, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	// OCI media types, as our builds write (skopeo's oci: transport
	// looks only for OCI manifests).
	return mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
}

func TestPushCostsNoMoreRequestsThanRemoteWrite(t *testing.T) {
	ctx := context.Background()
	img := randomImage(t, 10)

	// Plain remote.Write into one registry, our publisher into another (the
	// in-process registry shares blobs between repositories).
	plainReg, ourReg := testsupport.NewRegistry(t), testsupport.NewRegistry(t)
	plainRef, _ := name.NewTag(plainReg.Host+"/comfy/demo:v1", name.Insecure)
	if err := remote.Write(plainRef, img); err != nil {
		t.Fatal(err)
	}
	plainFirst := len(plainReg.Requests())
	if err := remote.Write(plainRef, img); err != nil {
		t.Fatal(err)
	}
	plainNoop := len(plainReg.Requests()) - plainFirst

	if _, err := publish.NewRegistry(repo(t, ourReg.Host, "comfy/demo")).Publish(ctx, img, "v1"); err != nil {
		t.Fatal(err)
	}
	first := ourReg.Requests()
	if len(first) > plainFirst {
		t.Errorf("first push: %d requests, plain remote.Write %d:\n%v", len(first), plainFirst, first)
	}
	if n := len(testsupport.BlobUploads(first)); n != 11 {
		t.Errorf("first push uploaded %d blobs, want 10 layers and the config", n)
	}
	// A new run (new publisher, as a new process) with nothing new.
	if _, err := publish.NewRegistry(repo(t, ourReg.Host, "comfy/demo")).Publish(ctx, img, "v1"); err != nil {
		t.Fatal(err)
	}
	noop := ourReg.Requests()[len(first):]
	if len(noop) > 3 {
		t.Errorf("push with nothing new: %d requests, want at most 3:\n%v", len(noop), noop)
	}
	t.Logf("requests: first push %d (remote.Write %d), nothing new %d (remote.Write %d)", len(first), plainFirst, len(noop), plainNoop)
	// The image is complete in the registry.
	got, err := remote.Image(repo(t, ourReg.Host, "comfy/demo").Tag("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); gd != digest(t, img) {
		t.Fatalf("registry holds %s", gd)
	}
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAppAndModelsImagesShareOneProbe(t *testing.T) {
	ctx := context.Background()
	reg := testsupport.NewRegistry(t)
	p := publish.NewRegistry(repo(t, reg.Host, "comfy/demo"))
	app, models := randomImage(t, 3), randomImage(t, 2)
	for _, tag := range []string{"v1", "v1-models"} {
		img := app
		if tag == "v1-models" {
			img = models
		}
		if _, err := p.Publish(ctx, img, tag); err != nil {
			t.Fatal(err)
		}
	}
	pings := 0
	for _, r := range reg.Requests() {
		if r.Path == "/v2/" {
			pings++
		}
	}
	if pings != 1 {
		t.Errorf("%d pings for two images to one repository, want 1", pings)
	}
}

// Two versions in two repositories of one registry share their model
// layers: the second push mounts them instead of uploading.
func TestSharedLayersAreMountedFromAnotherRepository(t *testing.T) {
	ctx := context.Background()
	dist := testsupport.NewDockerRegistry(t) // supports cross-repository mounts
	proxy := testsupport.NewFaultProxy(t, dist.Host)
	record := filepath.Join(testsupport.TempDir(t), "registry-blobs.json")
	shared := randomImage(t, 3)
	sharedLayers, _ := shared.Layers()
	mine, _ := random.Layer(4096, "application/vnd.oci.image.layer.v1.tar+gzip")
	v1img, err := mutate.AppendLayers(empty.Image, sharedLayers...)
	if err != nil {
		t.Fatal(err)
	}
	v2img, err := mutate.AppendLayers(empty.Image, append(sharedLayers, mine)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish.NewRegistry(repo(t, proxy.Host, "versions/a"), publish.WithMountRecord(record)).Publish(ctx, v1img, "v1"); err != nil {
		t.Fatal(err)
	}
	before := len(proxy.Requests())
	if _, err := publish.NewRegistry(repo(t, proxy.Host, "versions/b"), publish.WithMountRecord(record)).Publish(ctx, v2img, "v2"); err != nil {
		t.Fatal(err)
	}
	reqs := proxy.Requests()[before:]
	mounts, uploads := testsupport.Mounts(reqs), testsupport.BlobUploads(reqs)
	if len(mounts) != 3 {
		t.Errorf("%d shared layers mounted, want 3:\n%v", len(mounts), reqs)
	}
	for _, l := range sharedLayers {
		d, _ := l.Digest()
		for _, u := range uploads {
			if u == d.String() {
				t.Errorf("shared layer %s was uploaded again", d)
			}
		}
	}
	if len(uploads) != 2 {
		t.Errorf("uploaded %v, want the new layer and the config", uploads)
	}
	if _, err := remote.Image(repo(t, dist.Host, "versions/b").Tag("v2")); err != nil {
		t.Fatalf("the mounted image is not readable: %v", err)
	}
}

func TestProbeFailsFastOnADeadRegistry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close() // nothing listens there any more
	t.Setenv("DOCKER_CONFIG", testsupport.TempDir(t))
	err = publish.NewRegistry(repo(t, host, "comfy/demo")).Probe(context.Background())
	var pe *publish.ProbeError
	if !errors.As(err, &pe) {
		t.Fatalf("probe of a dead registry: %v", err)
	}
	for _, want := range []string{host, "anonymous", "not reachable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestProbeNamesTheCredentialsARegistryRefused(t *testing.T) {
	reg := testsupport.NewRegistryWithAuth(t, "ci", testsupport.Secret())
	dir := testsupport.TempDir(t)
	t.Setenv("DOCKER_CONFIG", dir)
	login := func(password string) {
		auth := base64.StdEncoding.EncodeToString([]byte("ci:" + password))
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+reg.Host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		testsupport.SecretInput(t, filepath.Join(dir, "config.json"))
	}
	login("wrong-password")
	err := publish.NewRegistry(repo(t, reg.Host, "comfy/demo")).Probe(context.Background())
	if err == nil {
		t.Fatal("a refused credential passed the probe")
	}
	for _, want := range []string{reg.Host, filepath.Join(dir, "config.json"), "credentials refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Error("the error shows the password")
	}
	login(testsupport.Secret())
	if err := publish.NewRegistry(repo(t, reg.Host, "comfy/demo")).Probe(context.Background()); err != nil {
		t.Fatalf("good credentials: %v", err)
	}
	// Without credentials: refused, and said to be anonymous.
	os.Remove(filepath.Join(dir, "config.json"))
	_, err = publish.NewRegistry(repo(t, reg.Host, "comfy/demo"), publish.WithKeychain(authn.DefaultKeychain)).Publish(context.Background(), randomImage(t, 1), "v1")
	if err == nil || !strings.Contains(err.Error(), "anonymous") {
		t.Fatalf("anonymous push to a registry with a password: %v", err)
	}
}

func TestBaseLayersAreMountedFromTheirOriginRepository(t *testing.T) {
	ctx := context.Background()
	dist := testsupport.NewDockerRegistry(t) // supports cross-repository mounts
	proxy := testsupport.NewFaultProxy(t, dist.Host)
	baseRepo := repo(t, proxy.Host, "base/os")
	if err := remote.Write(baseRepo.Tag("latest"), randomImage(t, 2)); err != nil {
		t.Fatal(err)
	}
	// The base as a build reads it: its layers know where they come from.
	base, err := remote.Image(baseRepo.Tag("latest"))
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := random.Layer(4096, types.OCILayer)
	app, err := mutate.AppendLayers(base, mine)
	if err != nil {
		t.Fatal(err)
	}
	before := len(proxy.Requests())
	// No mount record: the origin alone says where to mount from.
	if _, err := publish.NewRegistry(repo(t, proxy.Host, "comfy/app"), publish.WithPullFrom(baseRepo)).Publish(ctx, app, "v1"); err != nil {
		t.Fatal(err)
	}
	reqs := proxy.Requests()[before:]
	mounts, uploads := testsupport.Mounts(reqs), testsupport.BlobUploads(reqs)
	if len(mounts) != 2 {
		t.Errorf("%d base layers mounted, want 2:\n%v", len(mounts), reqs)
	}
	baseLayers, _ := base.Layers()
	for _, l := range baseLayers {
		d, _ := l.Digest()
		for _, q := range reqs {
			if q.Method == "GET" && strings.HasSuffix(q.Path, "/blobs/"+d.String()) {
				t.Errorf("a base layer was downloaded to be pushed: %v", q)
			}
		}
	}
	if len(uploads) != 2 {
		t.Errorf("uploaded %v, want the new layer and the config", uploads)
	}
	if _, err := remote.Image(repo(t, dist.Host, "comfy/app").Tag("v1")); err != nil {
		t.Fatalf("the pushed image is not readable: %v", err)
	}
}
