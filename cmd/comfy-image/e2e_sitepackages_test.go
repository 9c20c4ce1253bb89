package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// TestEndToEndVenvOnABaseWithTorch builds on the Debian base plus a layer
// installing a torch-like package the Debian way (egg-info folder in
// /usr/lib/python3/dist-packages, numpy as an egg-info file), with
// python.system_site_packages, and runs the image in podman: torch and
// numpy come from the base (the venv holds no file of them), the node's
// other requirements from the venv, and `python -m pip` works with the
// pip of the base's own ensurepip wheel.
func TestEndToEndVenvOnABaseWithTorch(t *testing.T) {
	base := e2eBase(t)
	site := "usr/lib/python3/dist-packages/"
	base = testsupport.BaseWithFiles(t, base, map[string]string{
		site + "torch/__init__.py":                  "__version__ = '2.6.0'\n",
		site + "torch-2.6.0.egg-info/PKG-INFO":      "Metadata-Version: 2.1\nName: torch\nVersion: 2.6.0\n",
		site + "torch-2.6.0.egg-info/requires.txt":  "numpy>=1.20\n",
		site + "torch-2.6.0.egg-info/top_level.txt": "torch\n",
		site + "numpy/__init__.py":                  "__version__ = '1.26.0'\n",
		site + "numpy-1.26.0.egg-info":              "Metadata-Version: 1.2\nName: numpy\nVersion: 1.26.0\n",
	})
	v := testsupport.NewVersion(t)
	for _, w := range []testsupport.Wheel{{Name: "torch", Version: "2.6.0"}, {Name: "torch", Version: "2.1.0"}, {Name: "numpy", Version: "1.26.0"}} {
		testsupport.BuildWheel(t, v.Wheels, w)
	}
	v.Nodes["ComfyUI-GGUF"].Commit("needs torch", map[string]string{"requirements.txt": "beta>=1.0\ntorch>=2.0\nnumpy\n"})
	v.WriteSpec(t, `"python": {"system_site_packages": true},`)
	cache := filepath.Join(v.Dir, "cache")
	layout := filepath.Join(v.Dir, "layout")
	res := testsupport.Run(t, v.Dir, v.Env(cache), "build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels,
		"--models", "skip", "--output", "oci:"+layout+":demo")
	if res.Code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	image := fmt.Sprintf("localhost/comfy-image-e2e-site:%d", time.Now().UnixNano())
	tool(t, "skopeo", "copy", "oci:"+layout+":demo", "containers-storage:"+image)
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", image).Run() })

	script := `import os, sys, subprocess, torch, numpy, alpha, beta
print("torch", torch.__version__, torch.__file__)
print("numpy", numpy.__file__)
print("alpha", alpha.__file__)
held = [os.path.join(d, f) for d, _, fs in os.walk(sys.prefix) for f in fs + _ if f.startswith(("torch", "numpy"))]
print("venv holds", held)
for args in (["--version"], ["check"]):
    r = subprocess.run([sys.executable, "-m", "pip"] + args, capture_output=True, text=True)
    print("pip", *args, "->", r.returncode, r.stdout.strip(), r.stderr.strip())
# What ComfyUI-Manager does: pip installs into the venv, over the base.
r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", "/wheels", "torch==2.1.0"], capture_output=True, text=True)
print("pip install ->", r.returncode, r.stderr.strip())
print(subprocess.run([sys.executable, "-c", "import torch; print('now torch', torch.VERSION, torch.__file__)"], capture_output=True, text=True).stdout)
`
	out := podman(t, "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"-v", v.Wheels+":/wheels:ro", "--entrypoint", "/opt/comfy/.venv/bin/python", image, "-c", script)
	t.Logf("in the image:\n%s", out)
	for _, want := range []string{
		"torch 2.6.0 /usr/lib/python3/dist-packages/torch/__init__.py",
		"numpy /usr/lib/python3/dist-packages/numpy/__init__.py",
		"alpha /opt/comfy/.venv/lib/python3.11/site-packages/alpha/__init__.py",
		"venv holds []",
		"pip --version -> 0 pip 23.0.1 from /opt/comfy/.venv/lib/python3.11/site-packages/pip",
		"pip check -> 0 No broken requirements found.",
		"pip install -> 0",
		"now torch 2.1.0 /opt/comfy/.venv/lib/python3.11/site-packages/torch/__init__.py",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("in the image, want %q:\n%s", want, out)
		}
	}
}
