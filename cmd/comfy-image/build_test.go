package main

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

func TestBuildDryRunWritesNothing(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := filepath.Join(v.Dir, "cache")
	reg := testsupport.NewRegistry(t)
	ref := reg.Host + "/comfy/demo:v1"
	args := []string{"build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels, "--push", ref}
	// Before any lock: the refs are listed, and the plan says each
	// repository is fetched and packed, and the lock written.
	res := testsupport.Run(t, v.Dir, v.Env(cache), append(args, "--dry-run")...)
	fetched := regexp.MustCompile(`(?m)^  fetch\s+core\s+ComfyUI from file://`)
	if res.Code != 0 || !fetched.MatchString(res.Stdout) || !strings.Contains(res.Stdout, "lock: none yet: the build writes ") {
		t.Fatalf("exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Fatalf("--dry-run created the cache: %s", treeState(t, cache))
	}
	if res := testsupport.Run(t, v.Dir, v.Env(cache), args...); res.Code != 0 {
		t.Fatalf("build: %s", res.Stderr)
	}
	uploads, _ := reg.Uploads()
	// inspect reads the pushed image back from the registry.
	insp := testsupport.Run(t, v.Dir, nil, "inspect", "--json", ref)
	var info struct {
		VersionID string `json:"version_id"`
		Layers    []struct{ Part, Name, Commit string }
	}
	if err := json.Unmarshal([]byte(insp.Stdout), &info); err != nil || info.VersionID != "demo" {
		t.Fatalf("inspect --json: %v\n%s%s", err, insp.Stdout, insp.Stderr)
	}
	var parts []string
	for _, l := range info.Layers {
		parts = append(parts, l.Part+":"+l.Name)
	}
	if got := strings.Join(parts, " "); got != "base: core:ComfyUI node:gguf node:ComfyUI-KJNodes venv:3 packages config:" {
		t.Errorf("inspect parts %q", got)
	}
	// After a build: every layer is reused and already in the registry.
	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"fix.py": "1"})
	if r := testsupport.Run(t, v.Dir, v.Env(cache), "lock", "--spec", v.SpecFile); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	res = testsupport.Run(t, v.Dir, v.Env(cache), append(args, "--dry-run")...)
	if res.Code != 0 {
		t.Fatalf("dry run: %s", res.Stderr)
	}
	for _, want := range []string{"reuse-cache    core", "reuse-cache    node   gguf", "pack           node   ComfyUI-KJNodes",
		"upload         node   ComfyUI-KJNodes to " + reg.Host + "/comfy/demo", "reuse-registry model"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, res.Stdout)
		}
	}
	if n, _ := reg.Uploads(); n != uploads {
		t.Fatal("--dry-run pushed")
	}
}

func TestBuildBadUsage(t *testing.T) {
	v := testsupport.NewVersion(t)
	for _, args := range [][]string{
		{"build", "--spec", v.SpecFile},
		{"build", "--spec", v.SpecFile, "--base", "oci:"},
		{"build", "--spec", v.SpecFile, "--base", "x", "--models", "some"},
		{"build", "--spec", v.SpecFile, "--base", "x", "--compression", "lz4"},
		{"build", "--spec", v.SpecFile, "--base", "x", "--push", "oci:/tmp/x"},
		{"inspect"},
	} {
		if res := testsupport.Run(t, v.Dir, nil, args...); res.Code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, res.Code, res.Stderr)
		}
	}
	res := testsupport.Run(t, v.Dir, v.Env(testsupport.TempDir(t)), "build", "--spec", v.SpecFile, "--base", "oci:"+testsupport.TempDir(t)+":none")
	if res.Code != 1 || !strings.Contains(res.Stderr, "--base") {
		t.Errorf("missing base: exit %d\n%s", res.Code, res.Stderr)
	}
}

func TestRegistryPasswordNeverLeaks(t *testing.T) {
	v := testsupport.NewVersion(t)
	password := testsupport.Secret()
	reg := testsupport.NewRegistryWithAuth(t, "ci", password)
	docker := filepath.Join(v.Dir, "docker")
	writeDockerConfig(t, docker, reg.Host, "ci", password)
	cache := filepath.Join(v.Dir, "cache")
	env := append(v.Env(cache), "DOCKER_CONFIG="+docker)
	layout := filepath.Join(v.Dir, "layout")
	args := []string{"build", "--spec", v.SpecFile, "--base", testsupport.SyntheticBase(t), "--wheels-dir", v.Wheels,
		"--push", reg.Host + "/comfy/demo:v1", "--output", "oci:" + layout + ":demo"}
	ok := testsupport.Run(t, v.Dir, env, args...)
	if ok.Code != 0 {
		t.Fatalf("push with credentials: %s", ok.Stderr)
	}
	if n, _ := reg.Uploads(); n == 0 {
		t.Fatal("nothing was pushed")
	}
	// A wrong password fails without printing either password.
	writeDockerConfig(t, docker, reg.Host, "ci", "wrong-"+password)
	bad := testsupport.Run(t, v.Dir, env, args...)
	if bad.Code == 0 {
		t.Fatal("a wrong password was accepted")
	}
	for _, out := range []string{ok.Stdout, ok.Stderr, bad.Stdout, bad.Stderr} {
		if strings.Contains(out, password) {
			t.Fatal("the registry password was printed")
		}
	}
	for _, root := range []string{cache, layout} {
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				if data, _ := os.ReadFile(p); strings.Contains(string(data), password) {
					t.Errorf("the registry password is in %s", p)
				}
			}
			return nil
		})
	}
}

func writeDockerConfig(t *testing.T, dir, host, user, password string) {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.SecretInput(t, filepath.Join(dir, "config.json"))
}

// A dead registry or a refused login fails the build before any work
// (nothing resolved, nothing packed), naming the registry and where the
// credentials came from; exit code 1.
func TestBuildProbesTheRegistryBeforeAnyWork(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	reg := testsupport.NewRegistryWithAuth(t, "ci", testsupport.Secret())
	docker := filepath.Join(v.Dir, "docker")
	writeDockerConfig(t, docker, reg.Host, "ci", "refused-password")
	for _, tc := range []struct {
		host  string
		wants []string
	}{
		{dead, []string{"registry " + dead, "credentials: anonymous", "not reachable"}},
		{reg.Host, []string{"registry " + reg.Host, filepath.Join(docker, "config.json"), "credentials refused"}},
	} {
		cache := filepath.Join(testsupport.TempDir(t), "cache")
		env := append(v.Env(cache), "DOCKER_CONFIG="+docker)
		start := time.Now()
		res := testsupport.Run(t, v.Dir, env, "build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels,
			"--push", tc.host+"/comfy/demo:v1")
		t.Logf("%s: failed after %s", tc.host, time.Since(start).Round(time.Millisecond))
		if res.Code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s", tc.host, res.Code, res.Stderr)
		}
		for _, want := range tc.wants {
			if !strings.Contains(res.Stderr, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", tc.host, want, res.Stderr)
			}
		}
		for _, work := range []string{"layers", "git"} {
			if _, err := os.Stat(filepath.Join(cache, work)); err == nil {
				t.Errorf("%s: the build did work (%s in the cache) before the probe failed", tc.host, work)
			}
		}
	}
}

// A cached layer whose bytes were damaged (same size) is found while it is
// pushed, dropped from the cache, packed again and pushed: the build
// succeeds and the registry holds a valid image.
func TestBuildRepacksADamagedCachedLayer(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := filepath.Join(v.Dir, "cache")
	args := []string{"build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels}
	if res := testsupport.Run(t, v.Dir, v.Env(cache), append(args, "--output", "oci:"+filepath.Join(v.Dir, "oci")+":demo")...); res.Code != 0 {
		t.Fatalf("build: %s", res.Stderr)
	}
	blobs, _ := filepath.Glob(filepath.Join(cache, "layers", "*", "*.blob"))
	if len(blobs) == 0 {
		t.Fatal("no cached layer")
	}
	data, err := os.ReadFile(blobs[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xFF
	os.WriteFile(blobs[0], data, 0o644)
	reg := testsupport.NewRegistry(t)
	ref := reg.Host + "/comfy/demo:v1"
	res := testsupport.Run(t, v.Dir, v.Env(cache), append(args, "--push", ref)...)
	if res.Code != 0 || !strings.Contains(res.Stderr, "damaged") {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	r, _ := name.ParseReference(ref, name.Insecure)
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("the pushed image is not valid: %v", err)
	}
}

// Two builds at once into one OCI layout (issue 8 point 7): both tags are
// there and index.json stays valid, read back by go-containerregistry and
// by skopeo.
func TestTwoBuildsIntoOneLayoutKeepBothTags(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := filepath.Join(v.Dir, "cache")
	dir := filepath.Join(v.Dir, "oci")
	var wg sync.WaitGroup
	results := make([]testsupport.Result, 2)
	for i, tag := range []string{"first", "second"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = testsupport.Run(t, v.Dir, v.Env(cache), "build", "--spec", v.SpecFile, "--base", base,
				"--wheels-dir", v.Wheels, "--output", "oci:"+dir+":"+tag)
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.Code != 0 {
			t.Fatalf("build: exit %d\n%s", r.Code, r.Stderr)
		}
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("index.json: %v", err)
	}
	tags := map[string]bool{}
	for _, d := range m.Manifests {
		tag := d.Annotations["org.opencontainers.image.ref.name"]
		tags[tag] = true
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		// Model layers are stored uncompressed, which validate's layer
		// check (gzip) does not read from a layout: check those by digest.
		var opts []validate.Option
		if strings.HasSuffix(tag, "-models") {
			opts = append(opts, validate.Fast)
		}
		if err := validate.Image(img, opts...); err != nil {
			t.Errorf("%s: %v", d.Digest, err)
		}
	}
	for _, tag := range []string{"first", "first-models", "second", "second-models"} {
		if !tags[tag] {
			t.Errorf("tag %s lost; index has %v", tag, tags)
		}
		if _, err := exec.LookPath("skopeo"); err == nil {
			if out, err := exec.Command("skopeo", "inspect", "oci:"+dir+":"+tag).CombinedOutput(); err != nil {
				t.Errorf("skopeo inspect %s: %v\n%s", tag, err, out)
			}
		}
	}
}

// An unchanged rebuild pushed again costs few requests, counted at the
// registry: one ping for the whole run (the probe's connection serves the
// registry cache and the push), per image the registry cache's manifest
// and config reads and the push's manifest HEAD; no blob request at all.
func TestUnchangedRebuildPushIsCheap(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := filepath.Join(v.Dir, "cache")
	reg := testsupport.NewRegistry(t)
	args := []string{"build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels, "--push", reg.Host + "/comfy/demo:v1"}
	if r := testsupport.Run(t, v.Dir, v.Env(cache), args...); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	first := len(reg.Requests())
	if r := testsupport.Run(t, v.Dir, v.Env(cache), args...); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	again := reg.Requests()[first:]
	pings, pushHeads := 0, 0
	for _, r := range again {
		switch {
		case r.Path == "/v2/":
			pings++
		case r.Method == "HEAD" && strings.Contains(r.Path, "/manifests/"):
			pushHeads++
		case strings.Contains(r.Path, "/blobs/uploads/") || r.Method == "PUT":
			t.Errorf("unchanged rebuild wrote: %v", r)
		}
	}
	const images = 2 // app and models
	// The build reads each tag's manifest and config (the registry
	// cache); the push asks nothing more: no manifest HEAD.
	if pings != 1 || pushHeads != 0 || len(again) > 1+2*images {
		t.Errorf("unchanged rebuild and push: %d requests (%d pings, %d manifest HEADs), want one ping, no HEAD and at most %d:\n%v",
			len(again), pings, pushHeads, 1+2*images, again)
	}
	t.Logf("first build and push: %d requests; unchanged rebuild and push: %d", first, len(again))
}

// Two versions pushed to two repositories of one registry share their
// model layers: the second push mounts them from the first repository,
// uploading none (counted at a real docker-registry, which mounts).
func TestSecondRepositoryMountsSharedModelLayers(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := filepath.Join(v.Dir, "cache")
	dist := testsupport.NewDockerRegistry(t)
	proxy := testsupport.NewFaultProxy(t, dist.Host) // no faults: it counts
	build := func(repo string) {
		t.Helper()
		if r := testsupport.Run(t, v.Dir, v.Env(cache), "build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels,
			"--push", proxy.Host+"/"+repo+":v1"); r.Code != 0 {
			t.Fatal(r.Stderr)
		}
	}
	build("team/first")
	before := len(proxy.Requests())
	build("team/second")
	reqs := proxy.Requests()[before:]
	mounted := map[string]bool{}
	for _, d := range testsupport.Mounts(reqs) {
		mounted[d] = true
	}
	r, _ := name.ParseReference(proxy.Host+"/team/second:v1-models", name.Insecure)
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		if !mounted[d.String()] {
			t.Errorf("model layer %s was not mounted", d)
		}
	}
	for _, d := range testsupport.BlobUploads(reqs) {
		if mounted[d] {
			t.Errorf("%s was mounted and uploaded", d)
		}
		for _, l := range ls {
			if ld, _ := l.Digest(); ld.String() == d {
				t.Errorf("model layer %s was uploaded", d)
			}
		}
	}
	t.Logf("second repository: %d blobs mounted, %d uploaded", len(mounted), len(testsupport.BlobUploads(reqs)))
}
