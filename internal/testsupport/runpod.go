package testsupport

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// RunPodServer is RunPod's serverless job API as runpod-python's worker
// loop uses it: GET job-take/<worker> (a job as {"id","input"}, or 204),
// GET job-stop/<worker> (ids of jobs cancelled or timed out, or 204),
// POST job-done/<worker>/<job> (the result), GET ping/<worker> (the
// heartbeat). Every request must carry the endpoint's API key in
// Authorization; others are refused and counted.
type RunPodServer struct {
	URL    string
	APIKey string

	mu           sync.Mutex
	queue        []RunPodJob
	takes        []RunPodRequest
	pings        []RunPodRequest
	unauthorized []string
	stops        []string // ids job-stop answers next
	// Results receives each posted result, in order.
	Results chan RunPodResult
}

// RunPodJob is a job as job-take returns it.
type RunPodJob struct {
	ID    string `json:"id"`
	Input any    `json:"input"`
	raw   string // answered as is when set (AddRaw)
}

// RunPodRequest is what a take or ping named: the worker id of its path
// and its query.
type RunPodRequest struct {
	WorkerID string
	Query    map[string]string
}

// RunPodResult is a job-done post.
type RunPodResult struct {
	WorkerID string
	JobID    string
	IsStream string
	Body     map[string]any
	Raw      []byte
}

// NewRunPodServer starts the API for one endpoint with apiKey.
func NewRunPodServer(t testing.TB, apiKey string) *RunPodServer {
	t.Helper()
	s := &RunPodServer{APIKey: apiKey, Results: make(chan RunPodResult, 100)}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Add queues a job.
func (s *RunPodServer) Add(id string, input any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, RunPodJob{ID: id, Input: input})
}

// AddRaw queues a job-take answer as given (raw JSON), for answers of an
// unexpected shape (a list, an element without an id).
func (s *RunPodServer) AddRaw(body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, RunPodJob{raw: body})
}

// Env is what RunPod sets in a serverless worker's environment (the SDK
// substitutes $ID, $RUNPOD_POD_ID and appends its own query parameters).
func (s *RunPodServer) Env(podID string) []string {
	base := s.URL + "/v2/endpoint1"
	return []string{
		"RUNPOD_WEBHOOK_GET_JOB=" + base + "/job-take/$ID?gpu=NVIDIA+RTX+A4000",
		"RUNPOD_WEBHOOK_POST_OUTPUT=" + base + "/job-done/$RUNPOD_POD_ID/$ID?gpu=NVIDIA+RTX+A4000",
		"RUNPOD_WEBHOOK_PING=" + base + "/ping/$RUNPOD_POD_ID?gpu=NVIDIA+RTX+A4000",
		"RUNPOD_AI_API_KEY=" + s.APIKey,
		"RUNPOD_POD_ID=" + podID,
		"RUNPOD_PING_INTERVAL=200",
	}
}

// Stop makes the next job-stop poll answer {"jobsToStop": [id]}, as RunPod
// does when a job is cancelled or times out.
func (s *RunPodServer) Stop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops = append(s.stops, id)
}

// Takes, Pings and Unauthorized report what the server saw.
func (s *RunPodServer) Takes() []RunPodRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RunPodRequest(nil), s.takes...)
}

func (s *RunPodServer) Pings() []RunPodRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RunPodRequest(nil), s.pings...)
}

func (s *RunPodServer) Unauthorized() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unauthorized...)
}

func (s *RunPodServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != s.APIKey {
		s.mu.Lock()
		s.unauthorized = append(s.unauthorized, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v2/endpoint1/"), "/")
	query := map[string]string{}
	for k, v := range r.URL.Query() {
		query[k] = v[0]
	}
	switch {
	case len(parts) == 2 && parts[0] == "job-take" && r.Method == http.MethodGet:
		s.mu.Lock()
		s.takes = append(s.takes, RunPodRequest{WorkerID: parts[1], Query: query})
		var job *RunPodJob
		if len(s.queue) > 0 {
			job = &s.queue[0]
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		if job == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if job.raw != "" {
			io.WriteString(w, job.raw)
			return
		}
		json.NewEncoder(w).Encode(job)
	case len(parts) == 3 && parts[0] == "job-done" && r.Method == http.MethodPost:
		raw, _ := io.ReadAll(r.Body)
		res := RunPodResult{WorkerID: parts[1], JobID: parts[2], IsStream: query["isStream"], Raw: raw}
		if err := json.Unmarshal(raw, &res.Body); err != nil {
			http.Error(w, "result is not JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.Results <- res
	case len(parts) == 2 && parts[0] == "job-stop" && r.Method == http.MethodGet:
		s.mu.Lock()
		ids := s.stops
		s.stops = nil
		s.mu.Unlock()
		if len(ids) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"jobsToStop": ids})
	case len(parts) == 2 && parts[0] == "ping" && r.Method == http.MethodGet:
		s.mu.Lock()
		s.pings = append(s.pings, RunPodRequest{WorkerID: parts[1], Query: query})
		s.mu.Unlock()
	default:
		http.NotFound(w, r)
	}
}
