package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// runDemo runs testdata/demo/demo.sh (what `make demo` runs) with the test
// binary, the e2e base and its own output folder.
func runDemo(t *testing.T, env ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", "../../testdata/demo/demo.sh")
	cmd.Env = append(os.Environ(), append([]string{"COMFY_IMAGE=" + testsupport.Binary(t),
		"DEMO_OUT=" + filepath.Join(testsupport.TempDir(t), "demo-out"), "DEMO_PORT=" + freeHostPort(t)}, env...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestEndToEndDemo: the demo builds the example's images on the base, runs
// the app image in podman with the models image mounted, the stand-in
// ComfyUI finds its model, and a /runsync job returns an image made from
// that model; it says what to try next.
func TestEndToEndDemo(t *testing.T) {
	base := e2eBase(t)
	image := fmt.Sprintf("localhost/comfy-image-e2e-demo-%d", time.Now().UnixNano())
	out, code := runDemo(t, "DEMO_BASE="+base, "DEMO_IMAGE="+image)
	t.Cleanup(func() { exec.Command("podman", "rmi", image+":demo", image+":demo-models").Run() })
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"== 1/7 system packages\nall installed:",
		"ComfyUI stand-in found model: vae/demo_vae.safetensors (3000000 bytes)",
		"status: COMPLETED",
		"the model the container read is demo_vae.safetensors",
		"What to try next",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "skipping") {
		t.Errorf("demo skipped a step:\n%s", out)
	}
}

// TestEndToEndDemoFailsAStepLoudly: a base that cannot be read stops the
// demo with exit 1 and the reason, before anything runs.
func TestEndToEndDemoFailsAStepLoudly(t *testing.T) {
	e2eBase(t)
	out, code := runDemo(t, "DEMO_BASE=oci:"+filepath.Join(testsupport.TempDir(t), "no-base")+":bookworm")
	if code != 1 || !strings.Contains(out, "demo: FAILED: build failed") || !strings.Contains(out, "no-base/index.json") {
		t.Errorf("demo with a missing base: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "== 6/7") {
		t.Errorf("the demo went on after the build failed:\n%s", out)
	}
}
