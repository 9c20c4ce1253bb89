package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// e2eBase is the OCI layout of the Debian base with Python, made by
// testdata/base-image.sh; the end-to-end tests run when COMFY_E2E=1 (as
// .ci/run sets it after installing the tools) and fail if anything is missing.
func e2eBase(t *testing.T) string {
	if os.Getenv("COMFY_E2E") != "1" {
		t.Skip("end-to-end test: set COMFY_E2E=1 (bash .ci/run does) to run it against docker-registry, skopeo, umoci and podman")
	}
	dir := os.Getenv("COMFY_E2E_BASE")
	if dir == "" {
		dir = "/var/tmp/comfy-image-base/oci"
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Fatalf("no base image layout at %s: run bash testdata/base-image.sh", dir)
	}
	for _, tool := range []string{"skopeo", "umoci", "podman", "runc", "docker-registry"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: %v", tool, err)
		}
	}
	return "oci:" + dir + ":bookworm"
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// podmanArgs are the flags podman needs on these machines (design section 6).
var podmanArgs = []string{"--runtime", "runc", "--cgroup-manager=cgroupfs"}

func podman(t *testing.T, args ...string) string {
	t.Helper()
	return tool(t, "podman", append(append([]string{}, podmanArgs...), args...)...)
}

func TestEndToEndBuildPushRun(t *testing.T) {
	base := e2eBase(t)
	v := testsupport.NewVersion(t)
	reg := testsupport.NewDockerRegistry(t)
	cache := filepath.Join(v.Dir, "cache")
	ref := reg.Host + "/comfy/demo:v1"
	layout := filepath.Join(v.Dir, "layout")
	res := testsupport.Run(t, v.Dir, v.Env(cache), "build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels,
		"--push", ref, "--output", "oci:"+layout+":demo")
	if res.Code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	uploads := reg.Uploads()
	if uploads < 7 { // app layers, model layers, configs
		t.Fatalf("the registry log counts %d uploads after the first push:\n%s", uploads, reg.Log())
	}

	// skopeo reads what we pushed, both images.
	var info struct {
		Digest string
		Labels map[string]string
		Layers []string
	}
	if err := json.Unmarshal([]byte(tool(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Labels["org.opencontainers.image.version"] != "demo" || info.Labels["dev.comfy-image.node.gguf"] == "" {
		t.Errorf("labels %v", info.Labels)
	}
	tool(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref+"-models")
	tool(t, "skopeo", "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+filepath.Join(v.Dir, "copied")+":v1")

	// A second build from an empty cache: same digest, nothing uploaded.
	again := testsupport.Run(t, v.Dir, v.Env(filepath.Join(v.Dir, "cache2")), "build", "--spec", v.SpecFile, "--base", base,
		"--wheels-dir", v.Wheels, "--push", ref)
	if again.Code != 0 {
		t.Fatalf("second build: %s", again.Stderr)
	}
	var info2 struct{ Digest string }
	json.Unmarshal([]byte(tool(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)), &info2)
	if info2.Digest != info.Digest {
		t.Errorf("two caches gave %s and %s", info.Digest, info2.Digest)
	}
	if n := reg.Uploads(); n != uploads {
		t.Errorf("rebuilding an unchanged version uploaded %d blobs", n-uploads)
	}

	// umoci unpacks our OCI layout; its /opt/comfy matches an on-disk realize.
	bundle := filepath.Join(v.Dir, "bundle")
	tool(t, "umoci", "unpack", "--image", layout+":demo", bundle)
	target := filepath.Join(v.Dir, "target")
	if r := testsupport.Run(t, v.Dir, v.Env(cache), "realize", "--spec", v.SpecFile, "--target", target, "--wheels-dir", v.Wheels, "--skip-models"); r.Code != 0 {
		t.Fatalf("realize: %s", r.Stderr)
	}
	inImage := filepath.Join(bundle, "rootfs", "opt", "comfy")
	for _, sub := range []string{"ComfyUI", "custom_nodes"} {
		want, got := snapshot(t, filepath.Join(target, sub)), snapshot(t, filepath.Join(inImage, sub))
		for p, v := range want {
			if got[p] != v {
				t.Errorf("image %s/%s differs from the on-disk realize", sub, p)
			}
		}
		if len(got) != len(want) {
			t.Errorf("image %s has %d entries, realize %d", sub, len(got), len(want))
		}
	}
	for _, pkg := range []string{"alpha/__init__.py", "beta/__init__.py", "gamma/__init__.py"} {
		disk := readFile(t, target, ".venv/lib/python3.11/site-packages/"+pkg)
		if readFile(t, inImage, ".venv/lib/python3.11/site-packages/"+pkg) != disk {
			t.Errorf("venv %s differs between image and disk", pkg)
		}
	}

	// podman runs the app image; its venv imports the wheels, and the entry
	// script finds every model in the models image mounted at /models.
	podman(t, "pull", "-q", "--tls-verify=false", ref)
	podman(t, "pull", "-q", "--tls-verify=false", ref+"-models")
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", ref, ref+"-models").Run() })
	ulimits := []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	out := podman(t, append(append([]string{"run", "--rm", "--entrypoint", "python"}, ulimits...), ref, "-c",
		"import alpha, beta, gamma, sys; print(alpha.VERSION, beta.VERSION, gamma.VERSION, sys.prefix)")...)
	if !strings.Contains(out, "1.0 1.2 2.0 /opt/comfy/.venv") {
		t.Errorf("venv in the image: %s", out)
	}
	out = podman(t, append(append([]string{"run", "--rm"}, ulimits...),
		"--mount", "type=image,source="+ref+"-models,destination=/models", ref)...)
	for dest := range v.Models {
		folder, file := filepath.Dir(dest), filepath.Base(dest)
		if !strings.Contains(out, "found "+folder+" "+file) {
			t.Errorf("ComfyUI did not find %s through extra_model_paths.yaml:\n%s", dest, out)
		}
	}
	if !strings.Contains(out, "comfy-image: models from /models") || !strings.Contains(out, "--listen 0.0.0.0 --port 8188") {
		t.Errorf("entry script output:\n%s", out)
	}

	// One node moves: the registry receives that layer and the config only.
	before := reg.Uploads()
	v.Nodes["ComfyUI-KJNodes"].Commit("fix", map[string]string{"fix.py": "FIXED = 1\n"})
	if r := testsupport.Run(t, v.Dir, v.Env(cache), "lock", "--spec", v.SpecFile); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	moved := testsupport.Run(t, v.Dir, v.Env(cache), "build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels, "--push", ref)
	if moved.Code != 0 {
		t.Fatalf("build after a node moved: %s", moved.Stderr)
	}
	if n := reg.Uploads() - before; n != 2 {
		t.Errorf("a changed node uploaded %d blobs, want 2 (its layer and the config)", n)
	}
	if packed := strings.Count(moved.Stdout, " packed"); packed != 1 {
		t.Errorf("%d layers packed, want 1:\n%s", packed, moved.Stdout)
	}

	// inspect names the parts.
	insp := testsupport.Run(t, v.Dir, nil, "inspect", "oci:"+layout+":demo")
	for _, want := range []string{"core", "node    gguf", "venv", "config", v.Core.RevParse("HEAD")[:12]} {
		if !strings.Contains(insp.Stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, insp.Stdout)
		}
	}
}
