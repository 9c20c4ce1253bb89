package testsupport

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
)

// ComfyServer is ComfyUI's HTTP API for the worker's tests: it validates
// and runs API-format workflows of a few node types the way ComfyUI
// answers them (/prompt, /history/<id>, /view, /upload/image,
// /object_info/<class>, /models/<folder>).
//
// Node types: LoadImage (an uploaded image), CheckpointLoaderSimple (a
// file of Models["checkpoints"]), SaveImage and PreviewImage (save their
// "images" input as output/temp PNGs), VHS_VideoCombine (saves an mp4
// under "gifs", as VideoHelperSuite does) and RaiseError (fails at run
// time with its "message").
type ComfyServer struct {
	URL  string
	Host string // host of URL
	Port string // port of URL
	// Models lists the files of each model folder.
	Models map[string][]string
	// OnPrompt, when set, runs when a prompt is queued; returning false
	// leaves the prompt running forever (ComfyUI busy or dying).
	OnPrompt func(id string) bool

	mu       sync.Mutex
	canceled []string // what /interrupt and /queue {"delete"} asked to stop
	uploads  map[string][]byte
	files    map[string][]byte // by type/subfolder/filename
	history  map[string]any
	n        int
}

// NewComfyServer starts the API on 127.0.0.1.
func NewComfyServer(t testing.TB) *ComfyServer {
	t.Helper()
	s := &ComfyServer{Models: map[string][]string{}, uploads: map[string][]byte{}, files: map[string][]byte{}, history: map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	s.Host, s.Port, _ = net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	return s
}

// Upload returns what /upload/image received under name.
func (s *ComfyServer) Upload(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.uploads[name]
	return b, ok
}

// File returns an output file's bytes ("output/sub/name").
func (s *ComfyServer) File(key string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[key]
}

func (s *ComfyServer) serve(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/" && r.Method == http.MethodGet:
		io.WriteString(w, "<html>ComfyUI</html>")
	case p == "/upload/image" && r.Method == http.MethodPost:
		s.upload(w, r)
	case p == "/prompt" && r.Method == http.MethodPost:
		s.prompt(w, r)
	case (p == "/interrupt" || p == "/queue") && r.Method == http.MethodPost:
		s.cancel(w, r)
	case strings.HasPrefix(p, "/history/"):
		id := strings.TrimPrefix(p, "/history/")
		s.mu.Lock()
		out := map[string]any{}
		if h, ok := s.history[id]; ok {
			out[id] = h
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	case p == "/view":
		q := r.URL.Query()
		data := s.File(q.Get("type") + "/" + strings.Trim(q.Get("subfolder")+"/"+q.Get("filename"), "/"))
		if data == nil {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	case strings.HasPrefix(p, "/object_info/"):
		s.objectInfo(w, strings.TrimPrefix(p, "/object_info/"))
	case strings.HasPrefix(p, "/models/"):
		files := s.Models[strings.TrimPrefix(p, "/models/")]
		if files == nil {
			files = []string{}
		}
		writeJSON(w, http.StatusOK, files)
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *ComfyServer) upload(w http.ResponseWriter, r *http.Request) {
	f, h, err := r.FormFile("image")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	data, _ := io.ReadAll(f)
	s.mu.Lock()
	s.uploads[h.Filename] = data
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"name": h.Filename, "subfolder": "", "type": "input"})
}

func (s *ComfyServer) objectInfo(w http.ResponseWriter, class string) {
	if class != "CheckpointLoaderSimple" {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	files := append([]string{}, s.Models["checkpoints"]...)
	writeJSON(w, http.StatusOK, map[string]any{class: map[string]any{
		"input": map[string]any{"required": map[string]any{"ckpt_name": []any{files, map[string]any{}}}},
	}})
}

type comfyNode struct {
	ClassType string         `json:"class_type"`
	Inputs    map[string]any `json:"inputs"`
}

// prompt validates the workflow as ComfyUI does (400 with node_errors),
// then runs it and records its history.
func (s *ComfyServer) prompt(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Prompt   map[string]comfyNode `json:"prompt"`
		ClientID string               `json:"client_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"type": "invalid_prompt", "message": "Invalid prompt", "details": err.Error()}, "node_errors": map[string]any{}})
		return
	}
	nodeErrors := map[string]any{}
	for id, n := range req.Prompt {
		if e := s.validate(n); e != nil {
			nodeErrors[id] = map[string]any{"errors": []any{e}, "dependent_outputs": []string{}, "class_type": n.ClassType}
		}
	}
	if len(nodeErrors) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error":       map[string]any{"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": map[string]any{}},
			"node_errors": nodeErrors,
		})
		return
	}
	s.mu.Lock()
	s.n++
	id := fmt.Sprintf("prompt-%d", s.n)
	s.mu.Unlock()
	if s.OnPrompt != nil && !s.OnPrompt(id) {
		writeJSON(w, http.StatusOK, map[string]any{"prompt_id": id, "number": s.n, "node_errors": map[string]any{}})
		return
	}
	outputs, status := s.run(id, req.Prompt)
	s.mu.Lock()
	s.history[id] = map[string]any{"prompt": []any{s.n, id, req.Prompt}, "outputs": outputs, "status": status}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"prompt_id": id, "number": s.n, "node_errors": map[string]any{}})
}

func (s *ComfyServer) validate(n comfyNode) map[string]any {
	notInList := func(input string, list []string) map[string]any {
		v, _ := n.Inputs[input].(string)
		for _, f := range list {
			if f == v {
				return nil
			}
		}
		return map[string]any{"type": "value_not_in_list", "message": "Value not in list",
			"details": fmt.Sprintf("%s: '%s' not in %v", input, v, list), "extra_info": map[string]any{"input_name": input, "received_value": v}}
	}
	switch n.ClassType {
	case "LoadImage":
		s.mu.Lock()
		var names []string
		for k := range s.uploads {
			names = append(names, k)
		}
		s.mu.Unlock()
		sort.Strings(names)
		return notInList("image", names)
	case "CheckpointLoaderSimple":
		return notInList("ckpt_name", s.Models["checkpoints"])
	case "SaveImage", "PreviewImage", "VHS_VideoCombine", "RaiseError":
		return nil
	}
	return map[string]any{"type": "invalid_prompt", "message": "Cannot execute because node " + n.ClassType + " does not exist."}
}

// run executes the nodes: images flow from LoadImage (the upload's bytes)
// or a generated PNG into the savers.
func (s *ComfyServer) run(id string, prompt map[string]comfyNode) (map[string]any, map[string]any) {
	ids := make([]string, 0, len(prompt))
	for k := range prompt {
		ids = append(ids, k)
	}
	sort.Strings(ids)
	outputs := map[string]any{}
	messages := []any{[]any{"execution_start", map[string]any{"prompt_id": id}}}
	for _, nid := range ids {
		n := prompt[nid]
		prefix, _ := n.Inputs["filename_prefix"].(string)
		if prefix == "" {
			prefix = "ComfyUI"
		}
		switch n.ClassType {
		case "RaiseError":
			msg, _ := n.Inputs["message"].(string)
			messages = append(messages, []any{"execution_error", map[string]any{"prompt_id": id, "node_id": nid, "node_type": n.ClassType,
				"exception_message": msg + "\n", "exception_type": "RuntimeError", "traceback": []string{}}})
			return outputs, map[string]any{"status_str": "error", "completed": false, "messages": messages}
		case "SaveImage", "PreviewImage":
			kind := "output"
			if n.ClassType == "PreviewImage" {
				kind, prefix = "temp", "ComfyUI_temp"
			}
			// A prefix "a/b" saves b_00001_.png in subfolder a, as
			// ComfyUI's folder_paths.get_save_image_path does.
			subfolder, base := path.Split(prefix)
			subfolder = strings.Trim(subfolder, "/")
			name := base + "_00001_.png"
			s.save(kind+"/"+strings.TrimPrefix(subfolder+"/"+name, "/"), s.imageOf(prompt, n.Inputs["images"]))
			outputs[nid] = map[string]any{"images": []any{map[string]any{"filename": name, "subfolder": subfolder, "type": kind}}}
		case "VHS_VideoCombine":
			name := prefix + "_00001.mp4"
			video := append([]byte("\x00\x00\x00\x18ftypmp42"), s.imageOf(prompt, n.Inputs["images"])...)
			s.save("output/videos/"+name, video)
			outputs[nid] = map[string]any{"gifs": []any{map[string]any{"filename": name, "subfolder": "videos", "type": "output", "format": "video/h264-mp4", "frame_rate": 8}}}
		}
	}
	messages = append(messages, []any{"execution_success", map[string]any{"prompt_id": id}})
	return outputs, map[string]any{"status_str": "success", "completed": true, "messages": messages}
}

func (s *ComfyServer) save(key string, data []byte) {
	s.mu.Lock()
	s.files[key] = data
	s.mu.Unlock()
}

// imageOf is the image a link [node, slot] carries: a LoadImage's upload,
// else a PNG signature followed by the source node's id.
func (s *ComfyServer) imageOf(prompt map[string]comfyNode, link any) []byte {
	l, _ := link.([]any)
	if len(l) == 0 {
		return []byte("\x89PNG\r\n\x1a\nempty")
	}
	src, _ := l[0].(string)
	if n, ok := prompt[src]; ok && n.ClassType == "LoadImage" {
		name, _ := n.Inputs["image"].(string)
		data, _ := s.Upload(name)
		return data
	}
	return []byte("\x89PNG\r\n\x1a\nimage of node " + src)
}

// cancel answers ComfyUI's POST /interrupt ({"prompt_id": id}: stop that
// prompt if it runs) and POST /queue ({"delete": [ids]}: drop pending
// prompts), recording what was asked.
func (s *ComfyServer) cancel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PromptID string   `json:"prompt_id"`
		Delete   []string `json:"delete"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	s.mu.Lock()
	if r.URL.Path == "/interrupt" {
		s.canceled = append(s.canceled, "interrupt "+req.PromptID)
	}
	for _, id := range req.Delete {
		s.canceled = append(s.canceled, "delete "+id)
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// Canceled lists the interrupts ("interrupt <id>") and queue deletions
// ("delete <id>") ComfyUI received, in order.
func (s *ComfyServer) Canceled() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.canceled...)
}
