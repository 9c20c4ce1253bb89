package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// TestEndToEndRunPodWorker runs the built image in podman as worker-comfyui
// users do: with SERVE_API_LOCALLY=true it answers /runsync on port 8000
// with the output image as base64; with RunPod's job variables pointing at
// a job server on the host it takes a job, posts its output and pings. The
// in-image ComfyUI is the fixture's stand-in serving a small ComfyUI API.
func TestEndToEndRunPodWorker(t *testing.T) {
	base := e2eBase(t)
	v := testsupport.NewVersion(t)
	layout := filepath.Join(v.Dir, "layout")
	res := testsupport.Run(t, v.Dir, v.Env(filepath.Join(v.Dir, "cache")), "build", "--spec", v.SpecFile, "--base", base,
		"--wheels-dir", v.Wheels, "--models", "skip", "--output", "oci:"+layout+":demo")
	if res.Code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	image := "localhost/comfy-image-e2e-worker:" + fmt.Sprint(time.Now().UnixNano())
	tool(t, "skopeo", "copy", "oci:"+layout+":demo", "containers-storage:"+image)
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", image).Run() })
	run := append(append([]string{}, podmanArgs...), "run", "-d", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"-e", "COMFY_STANDIN=http")
	workflow := map[string]any{"9": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"filename_prefix": "e2e"}}}

	t.Run("SERVE_API_LOCALLY", func(t *testing.T) {
		port := freeHostPort(t)
		id := strings.TrimSpace(tool(t, "podman", append(run, "-p", "127.0.0.1:"+port+":8000", "-e", "SERVE_API_LOCALLY=true", image, "--cpu")...))
		t.Cleanup(func() { exec.Command("podman", "rm", "-f", id).Run() })
		api := "http://127.0.0.1:" + port
		var answer struct {
			Status string
			Error  string
			Output struct {
				Images []struct{ Filename, Type, Data string }
			}
		}
		body, _ := json.Marshal(map[string]any{"input": map[string]any{"workflow": workflow}})
		deadline := time.Now().Add(2 * time.Minute)
		for {
			resp, err := http.Post(api+"/runsync", "application/json", bytes.NewReader(body))
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&answer)
				resp.Body.Close()
				if err == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				logs, _ := exec.Command("podman", "logs", id).CombinedOutput()
				t.Fatalf("/runsync did not answer: %v\n%s", err, logs)
			}
			time.Sleep(300 * time.Millisecond)
		}
		if answer.Status != "COMPLETED" || len(answer.Output.Images) != 1 {
			t.Fatalf("/runsync answered %+v", answer)
		}
		img := answer.Output.Images[0]
		png, err := base64.StdEncoding.DecodeString(img.Data)
		if err != nil || img.Type != "base64" || img.Filename != "e2e_00001_.png" || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("output %s (%s): %v %q", img.Filename, img.Type, err, png)
		}
		logs, _ := exec.Command("podman", "logs", id).CombinedOutput()
		if !strings.Contains(string(logs), "--cpu --listen 0.0.0.0 --port 8188") {
			t.Errorf("ComfyUI's arguments in the container:\n%s", logs)
		}
	})

	t.Run("RunPod job loop", func(t *testing.T) {
		rp := testsupport.NewRunPodServer(t, "e2e-key")
		rp.Add("job-e2e", map[string]any{"workflow": workflow})
		args := append([]string{}, run...)
		args = append(args, "--network", "host")
		for _, kv := range rp.Env("pod-e2e") {
			args = append(args, "-e", kv)
		}
		// Host network: ComfyUI on a free port so it cannot clash with the host's.
		id := strings.TrimSpace(tool(t, "podman", append(args, image, "--port", freeHostPort(t))...))
		t.Cleanup(func() { exec.Command("podman", "rm", "-f", id).Run() })
		select {
		case r := <-rp.Results:
			out, _ := r.Body["output"].(map[string]any)
			files, _ := out["images"].([]any)
			if r.JobID != "job-e2e" || r.WorkerID != "pod-e2e" || len(files) != 1 {
				t.Errorf("result %s", r.Raw)
			} else if f := files[0].(map[string]any); f["type"] != "base64" || !bytes.HasPrefix(decode(f["data"]), []byte("\x89PNG\r\n\x1a\n")) {
				t.Errorf("output %v", f)
			}
		case <-time.After(2 * time.Minute):
			logs, _ := exec.Command("podman", "logs", id).CombinedOutput()
			t.Fatalf("no result posted:\n%s", logs)
		}
		if u := rp.Unauthorized(); len(u) > 0 {
			t.Errorf("requests without the API key: %v", u)
		}
	})
}

func freeHostPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

func decode(data any) []byte {
	s, _ := data.(string)
	b, _ := base64.StdEncoding.DecodeString(s)
	return b
}

// TestEndToEndCheck: `comfy-image check` runs an image whose node cannot
// load libGL.so.1 and fails naming the node and the library; without the
// models image it names each missing model.
func TestEndToEndCheck(t *testing.T) {
	base := e2eBase(t)
	v := testsupport.NewVersion(t)
	v.Nodes["ComfyUI-KJNodes"].Commit("needs libGL", map[string]string{
		"__init__.py": "import ctypes\nctypes.CDLL('libGL.so.1')\nNODE_CLASS_MAPPINGS = {}\n"})
	layout := filepath.Join(v.Dir, "layout")
	res := testsupport.Run(t, v.Dir, v.Env(filepath.Join(v.Dir, "cache")), "build", "--spec", v.SpecFile, "--base", base,
		"--wheels-dir", v.Wheels, "--output", "oci:"+layout+":demo")
	if res.Code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	suffix := fmt.Sprint(time.Now().UnixNano())
	image, models := "localhost/comfy-image-e2e-check:"+suffix, "localhost/comfy-image-e2e-check:"+suffix+"-models"
	tool(t, "skopeo", "copy", "oci:"+layout+":demo", "containers-storage:"+image)
	tool(t, "skopeo", "copy", "oci:"+layout+":demo-models", "containers-storage:"+models)
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", image, models).Run() })
	runArgs := []string{"--run-arg=--ulimit=nofile=1024:1024", "--run-arg=--ulimit=nproc=1024:1024", "--run-arg=-e=COMFY_STANDIN=http"}

	type report struct {
		OK           bool
		StartSeconds float64                         `json:"start_seconds"`
		FailedNodes  []struct{ Name, Error string }  `json:"failed_nodes"`
		Missing      []struct{ Dest, Folder string } `json:"missing_models"`
	}
	checkImage := func(extra ...string) (report, testsupport.Result) {
		args := append(append([]string{"check", image, "--json"}, runArgs...), extra...)
		r := testsupport.Run(t, v.Dir, nil, append(args, "--", "--cpu")...)
		var rep report
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
			t.Fatalf("check --json: %v\n%s\n%s", err, r.Stdout, r.Stderr)
		}
		return rep, r
	}

	rep, r := checkImage("--models-image", models)
	if r.Code != 1 || rep.OK {
		t.Errorf("check of an image with a broken node: exit %d, ok %v", r.Code, rep.OK)
	}
	if len(rep.FailedNodes) != 1 || rep.FailedNodes[0].Name != "ComfyUI-KJNodes" || !strings.Contains(rep.FailedNodes[0].Error, "libGL.so.1") {
		t.Errorf("failed nodes %+v", rep.FailedNodes)
	}
	if len(rep.Missing) != 0 || rep.StartSeconds <= 0 {
		t.Errorf("with the models image: missing %+v, start %.2fs", rep.Missing, rep.StartSeconds)
	}

	// A models folder named relative to where the user runs check (a bare
	// name is a named volume to podman and docker, not this folder).
	for dest, content := range v.Models {
		file := filepath.Join(v.Dir, "my-models", dest)
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if rep, r := checkImage("--models-dir", "my-models"); len(rep.Missing) != 0 {
		t.Errorf("check --models-dir my-models (relative): missing %+v\n%s", rep.Missing, r.Stderr)
	}

	// build --check: the same verdict right after a build.
	bc := testsupport.Run(t, v.Dir, v.Env(filepath.Join(v.Dir, "cache")), "build", "--spec", v.SpecFile, "--base", base,
		"--wheels-dir", v.Wheels, "--check", "--check-run-arg=--ulimit=nofile=1024:1024", "--check-run-arg=--ulimit=nproc=1024:1024",
		"--check-run-arg=-e=COMFY_STANDIN=http", "--check-comfy-arg=--cpu")
	if bc.Code != 1 || !strings.Contains(bc.Stdout, "custom node ComfyUI-KJNodes failed to import: libGL.so.1") || strings.Contains(bc.Stdout, "is not listed") {
		t.Errorf("build --check: exit %d\n%s\n%s", bc.Code, bc.Stdout, bc.Stderr)
	}
	t.Cleanup(func() {
		out, _ := exec.Command("podman", "images", "-q", "--filter", "reference=localhost/comfy-image-check/*").Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("podman", append([]string{"rmi", "-f"}, ids...)...).Run()
		}
	})

	rep, _ = checkImage()
	var missing []string
	for _, m := range rep.Missing {
		missing = append(missing, m.Folder+" "+m.Dest)
	}
	if strings.Join(missing, ",") != "vae vae/wan_vae.safetensors,diffusion_models diffusion_models/wan_unet.gguf" &&
		strings.Join(missing, ",") != "diffusion_models diffusion_models/wan_unet.gguf,vae vae/wan_vae.safetensors" {
		t.Errorf("without models, check reports missing %v", missing)
	}
}
