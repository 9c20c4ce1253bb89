package testsupport

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// ComfyRegistry answers like the Comfy Registry API (api.comfy.org) for
// installs: GET /nodes/{id} (the node, with latest_version), GET
// /nodes/{id}/install[?version=x.y.z] (a NodeVersion: id, version,
// downloadUrl, deprecated, status, ...), 404 with {error, message} for an
// unknown node or version, 400 for a version that is not x.y.z. Zips are
// served by a second, storage-like host, as the registry's are.
type ComfyRegistry struct {
	// URL is the API (use it as COMFY_REGISTRY_URL); StorageURL the zip host.
	URL, StorageURL string

	api, storage *httptest.Server
	mu           sync.Mutex
	nodes        map[string][]*registryNodeVersion // in publishing order
	zips         map[string][]byte
	log          []string
}

type registryNodeVersion struct {
	version    string
	deprecated bool
	zipPath    string
}

// ZipMember is one member of a zip a test builds: a file (Mode 0644 or
// 0755) or, with Link set, a symlink.
type ZipMember struct {
	Name    string
	Content string
	Mode    os.FileMode
	Link    string
}

// NewComfyRegistry starts both hosts; they stop when the test ends.
func NewComfyRegistry(t testing.TB) *ComfyRegistry {
	r := &ComfyRegistry{nodes: map[string][]*registryNodeVersion{}, zips: map[string][]byte{}}
	r.storage = httptest.NewServer(http.HandlerFunc(r.serveStorage))
	r.api = httptest.NewServer(http.HandlerFunc(r.serveAPI))
	r.URL, r.StorageURL = r.api.URL, r.storage.URL
	t.Cleanup(func() { r.api.Close(); r.storage.Close() })
	return r
}

// Publish adds a version of a node whose zip holds files (path -> content).
func (r *ComfyRegistry) Publish(t testing.TB, id, version string, files map[string]string) []byte {
	var ms []ZipMember
	for name, content := range files {
		ms = append(ms, ZipMember{Name: name, Content: content})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return r.PublishZip(t, id, version, MakeZip(t, ms...))
}

// PublishZip adds a version of a node with the given zip bytes.
func (r *ComfyRegistry) PublishZip(t testing.TB, id, version string, zipData []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := "/comfy-registry/publisher/" + id + "/" + version + "/node.zip"
	r.zips[p] = zipData
	r.nodes[id] = append(r.nodes[id], &registryNodeVersion{version: version, zipPath: p})
	return zipData
}

// Deprecate marks a published version deprecated.
func (r *ComfyRegistry) Deprecate(id, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.nodes[id] {
		if v.version == version {
			v.deprecated = true
		}
	}
}

// Replace swaps the bytes of a published zip (a registry that changed a
// version after it was locked).
func (r *ComfyRegistry) Replace(id, version string, zipData []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.zips["/comfy-registry/publisher/"+id+"/"+version+"/node.zip"] = zipData
}

// Requests lists "METHOD path?query" of the API and storage hosts.
func (r *ComfyRegistry) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// MakeZip builds a zip the way Python's zipfile does (Unix modes in the
// external attributes; symlinks as members with S_IFLNK).
func MakeZip(t testing.TB, members ...ZipMember) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range members {
		h := &zip.FileHeader{Name: m.Name, Method: zip.Deflate, Modified: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
		mode := m.Mode
		if mode == 0 {
			mode = 0o644
		}
		content := m.Content
		if m.Link != "" {
			mode, content = os.ModeSymlink|0o777, m.Link
		}
		if strings.HasSuffix(m.Name, "/") {
			mode = os.ModeDir | 0o755
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(content))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var semver = regexp.MustCompile(`^\d+\.\d+\.\d+$`)

func (r *ComfyRegistry) fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": http.StatusText(status), "message": msg})
}

func (r *ComfyRegistry) nodeVersion(id string, v *registryNodeVersion) map[string]any {
	return map[string]any{
		"id": "nv-" + id + "-" + v.version, "node_id": id, "version": v.version, "changelog": "",
		"createdAt": "2024-01-01T00:00:00Z", "dependencies": []string{}, "deprecated": v.deprecated,
		"status": "NodeVersionStatusActive", "downloadUrl": r.StorageURL + v.zipPath,
	}
}

func (r *ComfyRegistry) serveAPI(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.log = append(r.log, req.Method+" "+req.URL.RequestURI())
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	var versions []*registryNodeVersion
	if len(parts) >= 2 {
		versions = r.nodes[parts[1]]
	}
	r.mu.Unlock()
	if len(parts) < 2 || parts[0] != "nodes" || len(parts) > 3 || (len(parts) == 3 && parts[2] != "install") {
		r.fail(w, http.StatusNotFound, "no such route")
		return
	}
	id := parts[1]
	if len(versions) == 0 {
		r.fail(w, http.StatusNotFound, "Node not found")
		return
	}
	latest := versions[len(versions)-1]
	w.Header().Set("Content-Type", "application/json")
	if len(parts) == 2 {
		json.NewEncoder(w).Encode(map[string]any{"id": id, "name": id, "publisher": map[string]string{"id": "publisher"},
			"latest_version": r.nodeVersion(id, latest)})
		return
	}
	want := req.URL.Query().Get("version")
	if want == "" {
		json.NewEncoder(w).Encode(r.nodeVersion(id, latest))
		return
	}
	if !semver.MatchString(want) {
		r.fail(w, http.StatusBadRequest, "version must match ^\\d+\\.\\d+\\.\\d+$")
		return
	}
	for _, v := range versions {
		if v.version == want {
			json.NewEncoder(w).Encode(r.nodeVersion(id, v))
			return
		}
	}
	r.fail(w, http.StatusNotFound, "Node version not found")
}

func (r *ComfyRegistry) serveStorage(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.log = append(r.log, req.Method+" storage"+req.URL.Path)
	data, ok := r.zips[req.URL.Path]
	r.mu.Unlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(data))
}
