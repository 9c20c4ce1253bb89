package worker_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/worker"
	"github.com/comfy-image/comfy-image/realize"
	"github.com/comfy-image/comfy-image/versions"
)

// demoSpec has one hf:// model and one https:// model.
func demoSpec() *versions.Spec {
	return &versions.Spec{VersionID: "demo", Models: []versions.Model{
		{Source: "hf://Comfy-Org/Wan/split/wan_vae.safetensors", TargetSubdir: "vae"},
		{Source: "https://example.com/files/wan_unet.gguf", TargetSubdir: "diffusion_models"},
	}}
}

// install lays out /opt/comfy as the config layer does, with the
// stand-in ComfyUI main.py and a venv python that is the machine's python3.
func install(t *testing.T) string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed to run the worker: ", err)
	}
	root := testsupport.TempDir(t)
	spec := demoSpec()
	script, entry, manifest := worker.Paths(root)
	files := map[string][]byte{
		script:   worker.Script,
		manifest: worker.NewManifest(spec).JSON(),
		filepath.Join(root, "extra_model_paths.yaml"): realize.ExtraModelPaths(spec, "/models"),
		filepath.Join(root, "comfy.env"):              []byte("export FROM_COMFY_ENV='yes'\n"),
		filepath.Join(root, "ComfyUI", "main.py"):     []byte(testsupport.StandInMain),
	}
	for p, data := range files {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(entry, worker.EntryScript, 0o755); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, ".venv", "bin"), 0o755)
	if err := os.Symlink(python, filepath.Join(root, ".venv", "bin", "python")); err != nil {
		t.Fatal(err)
	}
	// The image's models layout (layers/modelslayout.go).
	os.Symlink("/models", filepath.Join(root, "models"))
	os.Symlink("../models", filepath.Join(root, "ComfyUI", "models"))
	return root
}

// baseEnv keeps the worker away from the machine's /models and
// /runpod-volume and from the caller's RunPod or bucket settings.
func baseEnv(t *testing.T) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "RUNPOD_") || strings.HasPrefix(k, "BUCKET_") || strings.HasPrefix(k, "COMFY_") || k == "SERVE_API_LOCALLY" || k == "TMPDIR" {
			continue
		}
		env = append(env, kv)
	}
	dir := testsupport.TempDir(t)
	return append(env, "TMPDIR="+dir, "COMFY_IMAGE_MODELS_MOUNT="+filepath.Join(dir, "no-models"), "RUNPOD_VOLUME_PATH="+filepath.Join(dir, "no-volume"))
}

// runEntry runs the entry script until it exits and returns its output.
func runEntry(t *testing.T, root string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, worker.EntryName), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestScriptIsStdlibPython39(t *testing.T) {
	check := `
import ast, sys
src = sys.stdin.read()
tree = ast.parse(src, feature_version=(3, 9))
bad = set()
for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            bad.add("relative import")
        names = [node.module or ""]
    for n in names:
        if n.split(".")[0] not in sys.stdlib_module_names:
            bad.add(n)
print("\n".join(sorted(bad)))
`
	cmd := exec.Command("python3", "-c", check)
	cmd.Stdin = bytes.NewReader(worker.Script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("worker.py does not parse as Python 3.9: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("worker.py imports modules outside the standard library: %s", s)
	}
}

func TestEntryPointArguments(t *testing.T) {
	root := install(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--listen 0.0.0.0 --port 8188"},
		{[]string{"--cpu"}, "--cpu --listen 0.0.0.0 --port 8188"},
		{[]string{"--port", "9000", "--cpu"}, "--port 9000 --cpu --listen 0.0.0.0"},
		{[]string{"--listen", "127.0.0.1", "--port=7000"}, "--listen 127.0.0.1 --port=7000"},
		{[]string{"--listen", "--cpu"}, "--listen --cpu --port 8188"},
	} {
		out, code := runEntry(t, root, baseEnv(t), tc.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", tc.args, code, out)
		}
		line := lineWith(out, "ComfyUI stand-in ready, args:")
		if !strings.HasSuffix(line, " "+tc.want) || !strings.Contains(line, "--extra-model-paths-config ") {
			t.Errorf("container args %q: ComfyUI got %q, want it to end with %q", tc.args, line, tc.want)
		}
	}
}

func lineWith(out, marker string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, marker) {
			return l
		}
	}
	return ""
}

func writeFile(t *testing.T, p string, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestModelsLocation(t *testing.T) {
	root := install(t)
	t.Run("COMFY_MODELS_DIR", func(t *testing.T) {
		dir := testsupport.TempDir(t)
		writeFile(t, filepath.Join(dir, "vae", "wan_vae.safetensors"), "vae")
		out, _ := runEntry(t, root, append(baseEnv(t), "COMFY_MODELS_DIR="+dir))
		wantLines(t, out, "comfy-image: models from "+dir+" (COMFY_MODELS_DIR)", "found vae wan_vae.safetensors",
			"comfy-image: missing model wan_unet.gguf (folder diffusion_models, from https://example.com/files/wan_unet.gguf)")
		assertModelsLink(t, root, dir)
	})
	t.Run("models mounted", func(t *testing.T) {
		env := baseEnv(t)
		mount := envValue(env, "COMFY_IMAGE_MODELS_MOUNT")
		writeFile(t, filepath.Join(mount, "vae", "wan_vae.safetensors"), "vae")
		writeFile(t, filepath.Join(mount, "diffusion_models", "wan_unet.gguf"), "unet")
		out, _ := runEntry(t, root, env)
		wantLines(t, out, "comfy-image: models from "+mount+" (models image mounted or baked)",
			"found vae wan_vae.safetensors", "found diffusion_models wan_unet.gguf")
		if strings.Contains(out, "missing model") {
			t.Errorf("a model was reported missing:\n%s", out)
		}
		assertModelsLink(t, root, mount)
	})
	t.Run("network volume and cached models", func(t *testing.T) {
		env := baseEnv(t)
		volume := envValue(env, "RUNPOD_VOLUME_PATH")
		models := filepath.Join(volume, "comfy-demo", "models")
		writeFile(t, filepath.Join(models, "diffusion_models", "wan_unet.gguf"), "unet")
		// RunPod's cached models: the Hugging Face cache layout.
		repo := filepath.Join(volume, "huggingface-cache", "hub", "models--Comfy-Org--Wan")
		rev := "0123456789abcdef0123456789abcdef01234567"
		writeFile(t, filepath.Join(repo, "refs", "main"), rev)
		cached := filepath.Join(repo, "snapshots", rev, "split", "wan_vae.safetensors")
		writeFile(t, cached, "vae from the cache")
		out, _ := runEntry(t, root, env)
		assertModelsLink(t, root, models)
		wantLines(t, out, "comfy-image: models from "+models+" (RunPod network volume)",
			"comfy-image: model vae/wan_vae.safetensors from RunPod's cached models "+cached,
			"found vae wan_vae.safetensors", "found diffusion_models wan_unet.gguf")
		if strings.Contains(out, "missing model") {
			t.Errorf("a model was reported missing:\n%s", out)
		}
		link := filepath.Join(envValue(env, "TMPDIR"), "comfy-image-models", "vae", "wan_vae.safetensors")
		if data, err := os.ReadFile(link); err != nil || string(data) != "vae from the cache" {
			t.Errorf("ComfyUI's vae folder does not lead to the cached file: %v %q", err, data)
		}
	})
	t.Run("cached models of another revision", func(t *testing.T) {
		// The cache holds the repo, but main now points at a revision
		// whose snapshot is absent: an older snapshot is another file
		// than the spec names, so the model is missing, not replaced.
		env := baseEnv(t)
		repo := filepath.Join(envValue(env, "RUNPOD_VOLUME_PATH"), "huggingface-cache", "hub", "models--Comfy-Org--Wan")
		writeFile(t, filepath.Join(repo, "refs", "main"), "1111111111111111111111111111111111111111")
		old := filepath.Join(repo, "snapshots", "0000000000000000000000000000000000000000", "split", "wan_vae.safetensors")
		writeFile(t, old, "an older vae")
		out, _ := runEntry(t, root, env)
		if strings.Contains(out, old) || strings.Contains(out, "found vae wan_vae.safetensors") {
			t.Errorf("the snapshot of another revision was linked in:\n%s", out)
		}
		wantLines(t, out, "comfy-image: missing model wan_vae.safetensors (folder vae")
	})
	t.Run("empty folders at /models", func(t *testing.T) {
		// An image or mount with only ComfyUI's folder names under /models
		// holds no model: the network volume's models are taken.
		env := baseEnv(t)
		if err := os.MkdirAll(filepath.Join(envValue(env, "COMFY_IMAGE_MODELS_MOUNT"), "vae"), 0o755); err != nil {
			t.Fatal(err)
		}
		models := filepath.Join(envValue(env, "RUNPOD_VOLUME_PATH"), "comfy-demo", "models")
		writeFile(t, filepath.Join(models, "vae", "wan_vae.safetensors"), "vae")
		out, _ := runEntry(t, root, env)
		wantLines(t, out, "comfy-image: models from "+models+" (RunPod network volume)", "found vae wan_vae.safetensors")
	})
	t.Run("nothing anywhere", func(t *testing.T) {
		out, _ := runEntry(t, root, baseEnv(t))
		wantLines(t, out, "comfy-image: missing model wan_vae.safetensors (folder vae, from hf://Comfy-Org/Wan/split/wan_vae.safetensors)",
			"comfy-image: missing model wan_unet.gguf (folder diffusion_models")
	})
}

// assertModelsLink checks that ComfyUI/models (folder_paths.models_dir)
// leads to the models folder the entry point chose.
func assertModelsLink(t *testing.T, root, chosen string) {
	t.Helper()
	got, err := filepath.EvalSymlinks(filepath.Join(root, "ComfyUI", "models"))
	want, _ := filepath.EvalSymlinks(chosen)
	if err != nil || got != want {
		t.Errorf("ComfyUI/models leads to %q (%v), want the chosen models folder %s", got, err, chosen)
	}
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

func wantLines(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// workerProc is a running worker whose output the test keeps.
type workerProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startWorker(t *testing.T, root string, env []string, args ...string) *workerProc {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, worker.EntryName), args...)
	cmd.Env = env
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	// Its own process group: a failing test kills the worker and the
	// ComfyUI stand-in it started (which holds the output pipe open).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &workerProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			w.mu.Lock()
			w.out.WriteString(sc.Text() + "\n")
			w.mu.Unlock()
		}
		cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-w.done
		if t.Failed() {
			t.Logf("worker output:\n%s", w.output())
		}
	})
	return w
}

func (w *workerProc) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// stop sends SIGTERM and returns the exit code.
func (w *workerProc) stop() int {
	w.cmd.Process.Signal(syscall.SIGTERM)
	<-w.done
	return w.cmd.ProcessState.ExitCode()
}

// result waits for the worker to post a result (or to exit).
func result(t *testing.T, rp *testsupport.RunPodServer, w *workerProc) testsupport.RunPodResult {
	t.Helper()
	select {
	case r := <-rp.Results:
		return r
	case <-w.done:
		t.Fatalf("the worker exited (%v) before posting a result:\n%s", w.cmd.ProcessState, w.output())
	case <-time.After(hang):
		t.Fatalf("no result posted after %v", hang)
	}
	return testsupport.RunPodResult{}
}

// serverlessWorker runs the worker against comfy (its --listen/--port) as
// a RunPod serverless worker of rp.
func serverlessWorker(t *testing.T, comfy *testsupport.ComfyServer, rp *testsupport.RunPodServer, extraEnv ...string) *workerProc {
	env := append(append(baseEnv(t), rp.Env("pod-abc123")...), "COMFY_STANDIN=wait")
	return startWorker(t, install(t), append(env, extraEnv...), "--listen", comfy.Host, "--port", comfy.Port)
}

func images(t *testing.T, r testsupport.RunPodResult) []map[string]any {
	t.Helper()
	out, _ := r.Body["output"].(map[string]any)
	list, _ := out["images"].([]any)
	var res []map[string]any
	for _, x := range list {
		res = append(res, x.(map[string]any))
	}
	if len(res) == 0 {
		t.Fatalf("job %s: no output files in %s", r.JobID, r.Raw)
	}
	return res
}

func decoded(t *testing.T, f map[string]any) []byte {
	t.Helper()
	if f["type"] != "base64" {
		t.Fatalf("output %v is not base64", f["filename"])
	}
	data, err := base64.StdEncoding.DecodeString(f["data"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var (
	uploadWorkflow = map[string]any{
		"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": "cat.png"}},
		"9": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "out"}},
	}
	catPNG = []byte("\x89PNG\r\n\x1a\n a cat")
)

func TestRunPodJobLoop(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	comfy.Models["checkpoints"] = []string{"sd15.safetensors", "sdxl.safetensors"}
	rp := testsupport.NewRunPodServer(t, "rp-key-secret")
	rp.Add("job-1", map[string]any{"workflow": uploadWorkflow,
		"images": []any{map[string]any{"name": "cat.png", "image": "data:image/png;base64," + base64.StdEncoding.EncodeToString(catPNG)}}})
	rp.Add("job-2", map[string]any{"workflow": map[string]any{
		"4": map[string]any{"class_type": "CheckpointLoaderSimple", "inputs": map[string]any{"ckpt_name": "flux-dev.safetensors"}},
		"9": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"4", 0}}},
	}})
	rp.Add("job-3", map[string]any{"workflow": map[string]any{
		"7": map[string]any{"class_type": "RaiseError", "inputs": map[string]any{"message": "CUDA out of memory"}},
	}})
	rp.Add("job-4", map[string]any{"workflow": map[string]any{
		"3": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"2", 0}, "filename_prefix": "frame"}},
		"5": map[string]any{"class_type": "VHS_VideoCombine", "inputs": map[string]any{"images": []any{"2", 0}, "filename_prefix": "clip"}},
		"6": map[string]any{"class_type": "PreviewImage", "inputs": map[string]any{"images": []any{"2", 0}}},
	}})
	w := serverlessWorker(t, comfy, rp)

	r := result(t, rp, w)
	if r.JobID != "job-1" || r.WorkerID != "pod-abc123" || r.IsStream != "false" {
		t.Errorf("first result posted for job %q by worker %q (isStream %q)", r.JobID, r.WorkerID, r.IsStream)
	}
	if up, _ := comfy.Upload("cat.png"); !bytes.Equal(up, catPNG) {
		t.Errorf("ComfyUI received %q as cat.png", up)
	}
	files := images(t, r)
	if files[0]["filename"] != "out_00001_.png" || !bytes.Equal(decoded(t, files[0]), catPNG) {
		t.Errorf("job-1 output %v", files[0]["filename"])
	}

	r = result(t, rp, w)
	msg, _ := r.Body["error"].(string)
	for _, want := range []string{"node 4 (CheckpointLoaderSimple)", "flux-dev.safetensors", "available in checkpoints: sd15.safetensors, sdxl.safetensors"} {
		if r.JobID != "job-2" || !strings.Contains(msg, want) {
			t.Errorf("job %s error lacks %q: %q", r.JobID, want, msg)
		}
	}

	r = result(t, rp, w)
	msg, _ = r.Body["error"].(string)
	if r.JobID != "job-3" || !strings.Contains(msg, "node 7 (RaiseError): CUDA out of memory") {
		t.Errorf("job %s error %q", r.JobID, msg)
	}

	// A video (VideoHelperSuite's "gifs" output) comes back with the image;
	// the temp preview does not.
	r = result(t, rp, w)
	byName := map[string][]byte{}
	for _, f := range images(t, r) {
		byName[f["filename"].(string)] = decoded(t, f)
	}
	// The video is in ComfyUI's subfolder videos: its name says so.
	if video := byName["videos/clip_00001.mp4"]; !bytes.Equal(video, comfy.File("output/videos/clip_00001.mp4")) || len(video) == 0 {
		t.Errorf("job-4 files %v: the mp4 is missing or differs", keys(byName))
	}
	if len(byName) != 2 || byName["frame_00001_.png"] == nil {
		t.Errorf("job-4 files %v, want frame_00001_.png and videos/clip_00001.mp4", keys(byName))
	}

	// The heartbeat and the takes name this worker; every request had the key.
	waitFor(t, w, "a heartbeat", func() bool { return len(rp.Pings()) > 0 })
	for _, p := range rp.Pings() {
		if p.WorkerID != "pod-abc123" {
			t.Errorf("ping from worker %q", p.WorkerID)
		}
	}
	takes := rp.Takes()
	if len(takes) < 4 || takes[0].WorkerID != "pod-abc123" || takes[0].Query["gpu"] == "" || takes[0].Query["job_in_progress"] != "0" {
		t.Errorf("job takes %+v", takes)
	}
	if u := rp.Unauthorized(); len(u) > 0 {
		t.Errorf("requests without the API key: %v", u)
	}
	// ComfyUI (custom nodes: code from outside) runs without the key.
	if env := comfyEnv(t, w); env == "" || strings.Contains(env, "RUNPOD_AI_API_KEY") || !strings.Contains(env, "RUNPOD_POD_ID") {
		t.Errorf("ComfyUI's environment: %q", env)
	}
	if code := w.stop(); code != 0 {
		t.Errorf("SIGTERM: worker exit %d", code)
	}
}

func keys(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// waitFor polls cond until it holds or the worker exits.
func waitFor(t *testing.T, w *workerProc, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(hang)
	for !cond() {
		select {
		case <-w.done:
			t.Fatalf("the worker exited before %s", what)
		case <-deadline:
			t.Fatalf("no %s after %v", what, hang)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// hang bounds a wait that only a broken worker would not end (a guard, not
// a measure of speed).
const hang = 2 * time.Minute

func TestRunPodComfyDiesMidJob(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	rp := testsupport.NewRunPodServer(t, "key")
	die := filepath.Join(testsupport.TempDir(t), "die")
	comfy.OnPrompt = func(string) bool {
		os.WriteFile(die, nil, 0o644) // ComfyUI crashes while running the prompt
		return false
	}
	rp.Add("job-1", map[string]any{"workflow": map[string]any{"9": uploadWorkflow["9"]}})
	w := serverlessWorker(t, comfy, rp, "COMFY_STANDIN_DIE="+die)
	r := result(t, rp, w)
	if msg, _ := r.Body["error"].(string); !strings.Contains(msg, "ComfyUI died during the job") {
		t.Errorf("job error %q, want ComfyUI's death named", msg)
	}
	<-w.done
	if code := w.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("the worker exited 0 after ComfyUI died; RunPod would keep it")
	}
}

// TestRunPodComfyDiesAnsweringThePrompt: ComfyUI crashes while it handles
// the prompt request (the connection drops before the process is gone);
// the job's error still names ComfyUI's death, not a dropped connection.
func TestRunPodComfyDiesAnsweringThePrompt(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	rp := testsupport.NewRunPodServer(t, "key")
	die := filepath.Join(t.TempDir(), "die")
	comfy.OnPrompt = func(string) bool {
		os.WriteFile(die, nil, 0o644)
		panic(http.ErrAbortHandler) // the connection closes without an answer
	}
	rp.Add("job-1", map[string]any{"workflow": map[string]any{"9": uploadWorkflow["9"]}})
	w := serverlessWorker(t, comfy, rp, "COMFY_STANDIN_DIE="+die)
	r := result(t, rp, w)
	if msg, _ := r.Body["error"].(string); !strings.Contains(msg, "ComfyUI died during the job") {
		t.Errorf("job error %q, want ComfyUI's death named", msg)
	}
	<-w.done
	if code := w.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("the worker exited 0 after ComfyUI died; RunPod would keep it")
	}
}

// TestRunPodJobTimeoutStopsThePrompt: a workflow that outlives
// COMFY_JOB_TIMEOUT fails the job and is stopped in ComfyUI (dropped from
// its queue, interrupted), so the next job does not wait behind it.
func TestRunPodJobTimeoutStopsThePrompt(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	rp := testsupport.NewRunPodServer(t, "key")
	comfy.OnPrompt = func(string) bool { return false } // runs forever
	rp.Add("job-1", map[string]any{"workflow": map[string]any{"9": uploadWorkflow["9"]}})
	w := serverlessWorker(t, comfy, rp, "COMFY_JOB_TIMEOUT=1")
	r := result(t, rp, w)
	if msg, _ := r.Body["error"].(string); !strings.Contains(msg, "did not finish within 1s") {
		t.Errorf("job error %q, want the timeout named", msg)
	}
	if got := strings.Join(comfy.Canceled(), ","); got != "delete prompt-1,interrupt prompt-1" {
		t.Errorf("ComfyUI was asked to stop %q, want the prompt dropped and interrupted", got)
	}
}

// TestRunPodStopSignal: a job cancelled on RunPod (or past the endpoint's
// execution timeout) arrives on the SDK's job-stop channel; the worker
// drops and interrupts its prompt, posts nothing for it, and takes the
// next job.
func TestRunPodStopSignal(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	rp := testsupport.NewRunPodServer(t, "key")
	comfy.OnPrompt = func(id string) bool {
		if id == "prompt-1" {
			rp.Stop("job-1") // cancelled while it runs
			return false
		}
		return true
	}
	wf := map[string]any{"workflow": map[string]any{"9": uploadWorkflow["9"]}}
	rp.Add("job-1", wf)
	rp.Add("job-2", wf)
	w := serverlessWorker(t, comfy, rp)
	if r := result(t, rp, w); r.JobID != "job-2" {
		t.Errorf("first result posted is for %s (%s), want job-2's: a stopped job posts nothing", r.JobID, r.Raw)
	}
	if got := strings.Join(comfy.Canceled(), ","); got != "delete prompt-1,interrupt prompt-1" {
		t.Errorf("ComfyUI was asked to stop %q, want prompt-1 dropped and interrupted", got)
	}
}

// TestRunPodLineWrappedBase64: images encoded by tools that wrap base64
// at 76 columns (the base64 command, MIME encoders) are accepted, as
// worker-comfyui accepts them; other characters still fail the job.
func TestRunPodLineWrappedBase64(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	rp := testsupport.NewRunPodServer(t, "key")
	img := bytes.Repeat(catPNG, 20) // several lines of base64
	enc := base64.StdEncoding.EncodeToString(img)
	var wrapped strings.Builder
	for len(enc) > 76 {
		wrapped.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	wrapped.WriteString(enc + "\n")
	rp.Add("job-1", map[string]any{"workflow": uploadWorkflow,
		"images": []any{map[string]any{"name": "cat.png", "image": wrapped.String()}}})
	rp.Add("job-2", map[string]any{"workflow": uploadWorkflow,
		"images": []any{map[string]any{"name": "cat.png", "image": "iVBOR*w0KGgo="}}})
	w := serverlessWorker(t, comfy, rp)
	if r := result(t, rp, w); r.Body["error"] != nil {
		t.Errorf("job with line-wrapped base64: %s", r.Raw)
	}
	if up, _ := comfy.Upload("cat.png"); !bytes.Equal(up, img) {
		t.Errorf("ComfyUI received %d bytes, want the %d of the image", len(up), len(img))
	}
	if r := result(t, rp, w); !strings.Contains(fmt.Sprint(r.Body["error"]), "image is not base64") {
		t.Errorf("job with a '*' in its base64: %s", r.Raw)
	}
}

func TestS3Output(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	s3 := testsupport.NewS3Server(t, "AKIDEXAMPLE", "s3-secret")
	rp := testsupport.NewRunPodServer(t, "key")
	rp.Add("job-s3", map[string]any{"workflow": uploadWorkflow,
		"images": []any{map[string]any{"name": "cat.png", "image": base64.StdEncoding.EncodeToString(catPNG)}}})
	w := serverlessWorker(t, comfy, rp, "BUCKET_ENDPOINT_URL="+s3.URL, "BUCKET_ACCESS_KEY_ID=AKIDEXAMPLE",
		"BUCKET_SECRET_ACCESS_KEY=s3-secret", "BUCKET_NAME=outputs")
	r := result(t, rp, w)
	files := images(t, r)
	if files[0]["type"] != "s3_url" {
		t.Fatalf("output %v", files[0])
	}
	stored, ctype, ok := s3.Object("outputs/job-s3/out_00001_.png")
	if !ok || !bytes.Equal(stored, catPNG) || ctype != "image/png" {
		t.Errorf("the store holds %v (%q, %v); rejected: %v", s3.Keys(), ctype, ok, s3.Rejected())
	}
	// The URL in the output is a presigned GET the store accepts.
	resp, err := http.Get(files[0]["data"].(string))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, catPNG) {
		t.Errorf("GET %s: %d %q; rejected %v", files[0]["data"], resp.StatusCode, body, s3.Rejected())
	}
	if rej := s3.Rejected(); len(rej) > 0 {
		t.Errorf("the store refused: %v", rej)
	}
	w.stop()
}

func TestS3WrongSecretFailsTheJob(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	s3 := testsupport.NewS3Server(t, "AKIDEXAMPLE", "s3-secret")
	rp := testsupport.NewRunPodServer(t, "key")
	rp.Add("job-s3", map[string]any{"workflow": map[string]any{"9": uploadWorkflow["9"]}})
	w := serverlessWorker(t, comfy, rp, "BUCKET_ENDPOINT_URL="+s3.URL, "BUCKET_ACCESS_KEY_ID=AKIDEXAMPLE",
		"BUCKET_SECRET_ACCESS_KEY=not-the-secret", "REFRESH_WORKER=true")
	r := result(t, rp, w)
	if r.Body["stopPod"] != true {
		t.Errorf("REFRESH_WORKER=true: the result does not ask RunPod to stop the worker: %s", r.Raw)
	}
	if msg, _ := r.Body["error"].(string); !strings.Contains(msg, "S3 PUT") || !strings.Contains(msg, "403") {
		t.Errorf("job error %q, want the refused S3 PUT", msg)
	}
	if rej := s3.Rejected(); len(rej) != 1 || !strings.Contains(rej[0], "signature does not match") {
		t.Errorf("store rejections %v", rej)
	}
	if strings.Contains(string(r.Raw), "not-the-secret") || strings.Contains(w.output(), "not-the-secret") {
		t.Errorf("the bucket secret leaked into the result or the log")
	}
	if env := comfyEnv(t, w); env == "" || strings.Contains(env, "BUCKET_SECRET_ACCESS_KEY") || strings.Contains(env, "BUCKET_ACCESS_KEY_ID") {
		t.Errorf("ComfyUI's environment: %q", env)
	}
	w.stop()
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

func TestLocalTestAPI(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	port := freePort(t)
	env := append(baseEnv(t), "COMFY_STANDIN=wait", "SERVE_API_LOCALLY=true", "RUNPOD_API_HOST=127.0.0.1", "RUNPOD_API_PORT="+port)
	w := startWorker(t, install(t), env, "--listen", comfy.Host, "--port", comfy.Port)
	api := "http://127.0.0.1:" + port
	waitFor(t, w, "the local API answers", func() bool {
		resp, err := http.Get(api + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	job := map[string]any{"input": map[string]any{"workflow": uploadWorkflow,
		"images": []any{map[string]any{"name": "cat.png", "image": base64.StdEncoding.EncodeToString(catPNG)}}}}
	var sync struct {
		ID, Status string
		Output     struct{ Images []map[string]any }
	}
	postJSON(t, api+"/runsync", job, &sync)
	if sync.Status != "COMPLETED" || len(sync.Output.Images) != 1 || !bytes.Equal(decoded(t, sync.Output.Images[0]), catPNG) {
		t.Errorf("/runsync answered %+v", sync)
	}
	var run struct{ ID, Status string }
	postJSON(t, api+"/run", job, &run)
	if run.ID == "" {
		t.Fatalf("/run answered %+v", run)
	}
	var status struct{ ID, Status string }
	waitFor(t, w, "the /run job completes", func() bool {
		resp, err := http.Get(api + "/status/" + run.ID)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&status)
		return status.Status != "IN_PROGRESS"
	})
	if status.Status != "COMPLETED" {
		t.Errorf("/status/%s: %+v", run.ID, status)
	}
	var health struct{ Jobs map[string]int }
	resp, err := http.Get(api + "/health")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health.Jobs["completed"] != 2 {
		t.Errorf("/health: %+v", health)
	}
	if code := w.stop(); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

func postJSON(t *testing.T, url string, in, out any) {
	t.Helper()
	data, _ := json.Marshal(in)
	resp, err := http.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// comfyEnv is the line where the stand-in ComfyUI lists its environment's names.
func comfyEnv(t *testing.T, w *workerProc) string {
	t.Helper()
	waitFor(t, w, "the stand-in's environment", func() bool { return lineWith(w.output(), "ComfyUI stand-in env:") != "" })
	return lineWith(w.output(), "ComfyUI stand-in env:")
}
