package testsupport

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
)

// lfsStore holds the Git LFS objects a GitServer serves through the LFS
// batch API (basic transfer), as GitHub does at <repo>.git/info/lfs.
type lfsStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	corrupt map[string]bool
	batches int
	// redirect, when set, answers an object GET with a 302 to
	// redirect + "/" + oid, as GitHub sends LFS downloads to its CDN.
	redirect string
}

// RedirectLFSDownloads makes the server redirect object downloads to
// base + "/" + oid (another host, such as a CDN) instead of serving them.
func (gs *GitServer) RedirectLFSDownloads(base string) {
	gs.lfs.mu.Lock()
	defer gs.lfs.mu.Unlock()
	gs.lfs.redirect = base
}

// AddLFSObject stores content as an LFS object of every repository the
// server serves and returns its pointer file.
func (gs *GitServer) AddLFSObject(content []byte) string {
	sum := sha256.Sum256(content)
	oid := hex.EncodeToString(sum[:])
	gs.lfs.mu.Lock()
	defer gs.lfs.mu.Unlock()
	if gs.lfs.objects == nil {
		gs.lfs.objects, gs.lfs.corrupt = map[string][]byte{}, map[string]bool{}
	}
	gs.lfs.objects[oid] = content
	return LFSPointer(content)
}

// CorruptLFSObject makes the server send other bytes for the object of
// pointer (a broken or malicious LFS server).
func (gs *GitServer) CorruptLFSObject(pointer string) {
	gs.lfs.mu.Lock()
	defer gs.lfs.mu.Unlock()
	gs.lfs.corrupt[pointerOID(pointer)] = true
}

// LFSBatches counts the batch requests served.
func (gs *GitServer) LFSBatches() int {
	gs.lfs.mu.Lock()
	defer gs.lfs.mu.Unlock()
	return gs.lfs.batches
}

func pointerOID(pointer string) string {
	_, rest, _ := strings.Cut(pointer, "oid sha256:")
	oid, _, _ := strings.Cut(rest, "\n")
	return oid
}

type lfsObject struct {
	OID     string                    `json:"oid"`
	Size    int64                     `json:"size"`
	Actions map[string]map[string]any `json:"actions,omitempty"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// serveLFS answers POST <repo>.git/info/lfs/objects/batch and GET
// <repo>.git/info/lfs/objects/<oid> as the LFS API does.
func (gs *GitServer) serveLFS(w http.ResponseWriter, req *http.Request) {
	base, rest, _ := strings.Cut(req.URL.Path, "/info/lfs/")
	const mediaType = "application/vnd.git-lfs+json"
	switch {
	case req.Method == http.MethodPost && rest == "objects/batch":
		if !strings.Contains(req.Header.Get("Accept"), mediaType) {
			http.Error(w, "expected Accept: "+mediaType, http.StatusNotAcceptable)
			return
		}
		var in struct {
			Operation string      `json:"operation"`
			Transfers []string    `json:"transfers"`
			Objects   []lfsObject `json:"objects"`
		}
		if err := json.NewDecoder(req.Body).Decode(&in); err != nil || in.Operation != "download" {
			http.Error(w, "bad batch request", http.StatusUnprocessableEntity)
			return
		}
		gs.lfs.mu.Lock()
		gs.lfs.batches++
		out := []lfsObject{}
		for _, o := range in.Objects {
			r := lfsObject{OID: o.OID, Size: o.Size}
			if data, ok := gs.lfs.objects[o.OID]; ok && int64(len(data)) == o.Size {
				r.Actions = map[string]map[string]any{"download": {
					"href": gs.URL + base + "/info/lfs/objects/" + o.OID, "expires_in": 3600}}
			} else {
				r.Error = &struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}{404, "Object does not exist"}
			}
			out = append(out, r)
		}
		gs.lfs.mu.Unlock()
		w.Header().Set("Content-Type", mediaType)
		json.NewEncoder(w).Encode(map[string]any{"transfer": "basic", "objects": out, "hash_algo": "sha256"})
	case req.Method == http.MethodGet && strings.HasPrefix(rest, "objects/"):
		oid := strings.TrimPrefix(rest, "objects/")
		gs.lfs.mu.Lock()
		if to := gs.lfs.redirect; to != "" {
			gs.lfs.mu.Unlock()
			http.Redirect(w, req, to+"/"+oid, http.StatusFound)
			return
		}
		data, ok := gs.lfs.objects[oid]
		if gs.lfs.corrupt[oid] {
			data = append([]byte("X"), data[1:]...)
		}
		gs.lfs.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(data)
	default:
		http.NotFound(w, req)
	}
}
