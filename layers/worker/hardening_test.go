package worker_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// localWorker runs the worker with RunPod's local test API and returns the
// API's URL once it answers.
func localWorker(t *testing.T, comfy *testsupport.ComfyServer, extraEnv ...string) (*workerProc, string) {
	t.Helper()
	port := freePort(t)
	env := append(baseEnv(t), "COMFY_STANDIN=wait", "SERVE_API_LOCALLY=true", "RUNPOD_API_HOST=127.0.0.1", "RUNPOD_API_PORT="+port)
	w := startWorker(t, install(t), append(env, extraEnv...), "--listen", comfy.Host, "--port", comfy.Port)
	api := "http://127.0.0.1:" + port
	waitFor(t, w, "the local API answers", func() bool {
		resp, err := http.Get(api + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return w, api
}

// twoSubfolders saves two images named out_00001_.png, one in subfolder a
// and one in b (filename_prefix "a/out", "b/out"), with different bytes.
var twoSubfolders = map[string]any{
	"9":  map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "a/out"}},
	"10": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"2", 0}, "filename_prefix": "b/out"}},
}

// TestS3KeysStayUnderTheJobPrefix: a job id from the local API's request
// ("../x", "a/b") cannot make a key leave its own prefix (climb out of the
// bucket's folder, or land under another job's "a/"); outputs of the same
// name in two ComfyUI subfolders get two keys.
func TestS3KeysStayUnderTheJobPrefix(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	s3 := testsupport.NewS3Server(t, "AKIDEXAMPLE", "s3-secret")
	w, api := localWorker(t, comfy, "BUCKET_ENDPOINT_URL="+s3.URL, "BUCKET_ACCESS_KEY_ID=AKIDEXAMPLE",
		"BUCKET_SECRET_ACCESS_KEY=s3-secret", "BUCKET_NAME=outputs")
	seen := map[string]string{} // job prefix -> job id
	for _, id := range []string{"../escape", "a/b", "a", "..", "a_b"} {
		var ans struct {
			Status, Error string
			Output        struct{ Images []map[string]any }
		}
		postJSON(t, api+"/runsync", map[string]any{"id": id, "input": map[string]any{"workflow": twoSubfolders}}, &ans)
		if ans.Status != "COMPLETED" || len(ans.Output.Images) != 2 {
			t.Errorf("job %q: %+v", id, ans)
			continue
		}
		var prefix string
		for _, f := range ans.Output.Images {
			url, _ := f["data"].(string)
			key := strings.TrimPrefix(strings.SplitN(url, "?", 2)[0], s3.URL+"/")
			parts := strings.Split(key, "/")
			// outputs/<job prefix>/<subfolder>/out_00001_.png
			if len(parts) != 4 || parts[0] != "outputs" || parts[1] == "" || parts[1] == "." || parts[1] == ".." || parts[3] != "out_00001_.png" {
				t.Errorf("job %q: output key %q is not outputs/<one job segment>/<subfolder>/out_00001_.png", id, key)
				continue
			}
			if prefix != "" && parts[1] != prefix {
				t.Errorf("job %q: outputs under two prefixes %q and %q", id, prefix, parts[1])
			}
			prefix = parts[1]
			if data, _, ok := s3.Object(key); !ok || !bytes.Contains(data, []byte("image of node")) {
				t.Errorf("job %q: the store lacks %q (keys %v, rejected %v)", id, key, s3.Keys(), s3.Rejected())
			}
		}
		if other, ok := seen[prefix]; ok {
			t.Errorf("jobs %q and %q share the key prefix %q", other, id, prefix)
		}
		seen[prefix] = id
	}
	if n := len(s3.Keys()); n != 10 {
		t.Errorf("the store holds %d objects, want 10 (2 per job): %v", n, s3.Keys())
	}
	w.stop()
}

// TestOutputsInSubfoldersKeptApart: two outputs named out_00001_.png in
// ComfyUI subfolders a and b both come back, under their subfolder.
func TestOutputsInSubfoldersKeptApart(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	rp := testsupport.NewRunPodServer(t, "key")
	rp.Add("job-1", map[string]any{"workflow": twoSubfolders})
	w := serverlessWorker(t, comfy, rp)
	byName := map[string][]byte{}
	for _, f := range images(t, result(t, rp, w)) {
		byName[f["filename"].(string)] = decoded(t, f)
	}
	for _, name := range []string{"a/out_00001_.png", "b/out_00001_.png"} {
		if want := comfy.File("output/" + name); want == nil || !bytes.Equal(byName[name], want) {
			t.Errorf("output %s: got %q, want ComfyUI's %q (outputs %v)", name, byName[name], want, keys(byName))
		}
	}
	if len(byName) != 2 {
		t.Errorf("outputs %v, want a/out_00001_.png and b/out_00001_.png", keys(byName))
	}
}

// TestWorkflowOfTheWrongType: a workflow that is a list or a string is
// refused saying an object was expected and what came; a job without one
// says it is missing.
func TestWorkflowOfTheWrongType(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	rp := testsupport.NewRunPodServer(t, "key")
	rp.Add("job-list", map[string]any{"workflow": []any{uploadWorkflow["9"]}})
	rp.Add("job-string", map[string]any{"workflow": "not a workflow"})
	rp.Add("job-none", map[string]any{"images": []any{}})
	w := serverlessWorker(t, comfy, rp)
	for _, want := range []struct{ job, msg string }{
		{"job-list", "'workflow' must be an object (ComfyUI's API format: node id to node), got a list"},
		{"job-string", "'workflow' must be an object (ComfyUI's API format: node id to node), got a string"},
		{"job-none", "Missing 'workflow' parameter"},
	} {
		r := result(t, rp, w)
		if msg, _ := r.Body["error"].(string); r.JobID != want.job || msg != want.msg {
			t.Errorf("job %s: error %q, want %s: %q", r.JobID, msg, want.job, want.msg)
		}
	}
}

// TestJobListWithoutID: a job-take answer that is a list holding an
// element without an id (or not an object) has that element skipped and
// logged; the worker runs the others and goes on.
func TestJobListWithoutID(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	rp := testsupport.NewRunPodServer(t, "key")
	input, _ := json.Marshal(map[string]any{"workflow": map[string]any{"9": uploadWorkflow["9"]}})
	rp.AddRaw(fmt.Sprintf(`[{"input": %s}, "job-x", {"id": "job-1", "input": %s}]`, input, input))
	rp.Add("job-2", map[string]any{"workflow": map[string]any{"9": uploadWorkflow["9"]}})
	w := serverlessWorker(t, comfy, rp)
	for _, id := range []string{"job-1", "job-2"} {
		if r := result(t, rp, w); r.JobID != id || r.Body["error"] != nil {
			t.Errorf("result for %s: %s, want %s done", r.JobID, r.Raw, id)
		}
	}
	wantLines(t, w.output(), "comfy-image: job-take answered an element without an id; skipped: {\"input\"",
		"comfy-image: job-take answered an element without an id; skipped: \"job-x\"")
	if code := w.stop(); code != 0 {
		t.Errorf("SIGTERM: worker exit %d", code)
	}
}

// TestLocalAPIBodyLimit: a request body over 64 MiB is refused with 413
// before it is read (the worker does not buffer it); one under the bound
// still runs.
func TestLocalAPIBodyLimit(t *testing.T) {
	comfy := testsupport.NewComfyServer(t)
	w, api := localWorker(t, comfy)
	conn, err := net.Dial("tcp", strings.TrimPrefix(api, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Only the head is sent: a worker that waits for the announced body
	// never answers (the deadline guards against a hang, it measures nothing).
	fmt.Fprintf(conn, "POST /runsync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 64<<20+1)
	conn.SetReadDeadline(time.Now().Add(hang))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a 64 MiB + 1 body: %v", err)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(fmt.Sprint(body["error"]), "64 MiB") {
		t.Errorf("64 MiB + 1 body: %d %v, want 413 naming the 64 MiB bound", resp.StatusCode, body)
	}
	var ans struct{ Status string }
	postJSON(t, api+"/runsync", map[string]any{"input": map[string]any{"workflow": map[string]any{"9": uploadWorkflow["9"]}}}, &ans)
	if ans.Status != "COMPLETED" {
		t.Errorf("a small job after the refusal: %+v", ans)
	}
	w.stop()
}

// TestEntryPointPortNeedsANumber: the container's --port (ComfyUI's
// argument, the only --port of comfy-image) given without a value, or
// with one that is no port, stops the start with exit 2 saying what is
// expected, before ComfyUI starts.
func TestEntryPointPortNeedsANumber(t *testing.T) {
	root := install(t)
	for _, args := range [][]string{{"--port"}, {"--port", "--cpu"}, {"--port="}, {"--port", "http"}, {"--port=70000"}} {
		out, code := runEntry(t, root, baseEnv(t), args...)
		if code != 2 || !strings.Contains(out, "comfy-image: --port: expected a port number (1-65535) for ComfyUI, e.g. --port 8188") {
			t.Errorf("container args %q: exit %d, want 2 saying a port number is expected:\n%s", args, code, out)
		}
		if strings.Contains(out, "ComfyUI stand-in ready") {
			t.Errorf("container args %q: ComfyUI started with a bad --port", args)
		}
	}
}
