package checkout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/versions"
)

func TestParseLFSPointer(t *testing.T) {
	good := testsupport.LFSPointer([]byte("weights"))
	if p := parseLFSPointer([]byte(good)); p == nil || p.Size != 7 || len(p.OID) != 64 {
		t.Fatalf("parseLFSPointer(%q) = %+v", good, p)
	}
	for _, bad := range []string{
		"",
		"not a pointer\n",
		strings.Replace(good, "spec/v1", "spec/v9", 1),
		strings.Replace(good, "sha256:", "sha1:", 1),
		strings.TrimSuffix(good, "\n"),
		strings.Replace(good, "size 7", "size -1", 1),
		"version https://git-lfs.github.com/spec/v1\noid sha256:" + strings.Repeat("a", 64) + "\n", // no size
		"oid sha256:" + strings.Repeat("a", 64) + "\nversion https://git-lfs.github.com/spec/v1\nsize 1\n",
		good + strings.Repeat("x", 1024) + "\n",
	} {
		if p := parseLFSPointer([]byte(bad)); p != nil {
			t.Errorf("parseLFSPointer(%q) = %+v, want nil", bad, p)
		}
	}
}

// lfsNode is a served node with an LFS-tracked weights file.
type lfsNode struct {
	srv     *testsupport.GitServer
	url     string
	weights []byte
	pointer string
}

func newLFSNode(t *testing.T) *lfsNode {
	srv := testsupport.NewGitServer(t)
	n := &lfsNode{srv: srv, url: srv.RepoURL("org/lfsnode"), weights: bytes.Repeat([]byte("w8\x00"), 5000)}
	n.pointer = srv.AddLFSObject(n.weights)
	r := srv.NewRepo(t, "org/lfsnode")
	r.Commit("lfs", map[string]string{
		".gitattributes":            "*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
		"models/w.safetensors":      n.pointer,
		"__init__.py":               "\n",
		"docs/example.safetensors!": "not tracked\n",
	})
	return n
}

func (n *lfsNode) spec(t *testing.T, lfs bool) *versions.Spec {
	return parseSpec(t, fmt.Sprintf(`{"schema_version": 2, "version_id": "demo", "comfy": {"repo": %q},
	  "custom_nodes": [{"repo": %q, "name": "lfsnode", "lfs": %v}]}`, n.url, n.url, lfs))
}

// checkout resolves the node's default branch in the cache root cacheDir
// and checks the node out into a new folder with the spec's options.
func (n *lfsNode) checkout(t *testing.T, cacheDir string, spec *versions.Spec) (string, error) {
	t.Helper()
	ctx := context.Background()
	cache := NewGitCache(cacheDir, false, nil)
	res, err := cache.Resolve(ctx, n.url, "", "")
	if err != nil {
		return "", err
	}
	r, err := OpenMirror(ctx, cache, n.url, res.Commit)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testsupport.TempDir(t), "lfsnode")
	_, err = CheckoutTree(r, res.Commit, dir, nil, false, TreeOptions(ctx, cache, n.url, spec.CustomNodes[0])...)
	return dir, err
}

// Issue 11: without "lfs" a pointer is written as git writes it, with a
// warning naming the file; with "lfs": true the object comes through the
// batch API, verified, stored content-addressed and not fetched again.
func TestLFSPointersWarnedOrFetched(t *testing.T) {
	n := newLFSNode(t)
	cacheDir := testsupport.TempDir(t)
	dir, err := n.checkout(t, cacheDir, n.spec(t, false))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "models/w.safetensors")); string(got) != n.pointer {
		t.Fatalf("without lfs the file is %q, want the pointer", got)
	}
	// The pointer (only) is named, for the lock's warning.
	ctx := context.Background()
	cache := NewGitCache(cacheDir, false, nil)
	res, _ := cache.Resolve(ctx, n.url, "", "")
	r, _ := cache.Open(n.url)
	info, err := InspectTree(r, res.Commit)
	if err != nil || fmt.Sprint(info.LFSPointers) != "[models/w.safetensors]" {
		t.Fatalf("LFS pointers %v (%v), want models/w.safetensors only", info.LFSPointers, err)
	}
	if n.srv.LFSBatches() != 0 {
		t.Fatal("the LFS server was asked without lfs: true")
	}

	dir, err = n.checkout(t, cacheDir, n.spec(t, true))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "models/w.safetensors")); !bytes.Equal(got, n.weights) {
		t.Fatalf("with lfs the file is %d bytes, want the %d-byte object", len(got), len(n.weights))
	}
	// The image layer reads the same content through CommitFiles.
	files, err := CommitFiles(r, res.Commit, TreeOptions(ctx, cache, n.url, versions.Node{LFS: true})...)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Path == "models/w.safetensors" {
			rc, _ := f.Open()
			got, _ := io.ReadAll(rc)
			rc.Close()
			if f.Size != int64(len(n.weights)) || !bytes.Equal(got, n.weights) {
				t.Fatalf("CommitFiles gives %d bytes (size %d) for the LFS file, want the object", len(got), f.Size)
			}
		}
	}
	oid := parseLFSPointer([]byte(n.pointer)).OID
	if _, err := os.Stat(filepath.Join(cacheDir, "models", "sha256", oid)); err != nil {
		t.Fatalf("the object is not in the content-addressed store: %v", err)
	}
	batches := n.srv.LFSBatches()
	if _, err := n.checkout(t, cacheDir, n.spec(t, true)); err != nil {
		t.Fatal(err)
	}
	if n.srv.LFSBatches() != batches {
		t.Fatal("a stored object was asked for again")
	}
}

// An object whose bytes do not match the pointer's sha256 is refused,
// naming the file; nothing lands in the store.
func TestLFSObjectIsVerified(t *testing.T) {
	n := newLFSNode(t)
	n.srv.CorruptLFSObject(n.pointer)
	cacheDir := testsupport.TempDir(t)
	_, err := n.checkout(t, cacheDir, n.spec(t, true))
	var le *LFSError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "models/w.safetensors") || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("got %v, want an LFS error naming the file and the sha256", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(cacheDir, "models", "sha256")); len(entries) != 0 {
		t.Fatalf("the store kept %d files of a refused object", len(entries))
	}
}

// A private node's LFS objects are fetched with the credentials of its URL
// (from the environment); without them the error says what to give.
func TestLFSObjectsOfAPrivateNode(t *testing.T) {
	n := newLFSNode(t)
	n.srv.RequireBasicAuth("x-access-token", testsupport.Secret())
	t.Setenv("LFS_TEST_TOKEN", testsupport.Secret())
	n.url = strings.Replace(n.url, "http://", "http://x-access-token:${LFS_TEST_TOKEN}@", 1)
	dir, err := n.checkout(t, testsupport.TempDir(t), n.spec(t, true))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "models/w.safetensors")); !bytes.Equal(got, n.weights) {
		t.Fatal("the private node's object was not fetched")
	}
	if _, err := LFSEndpoint("git@github.com:org/repo"); err != nil {
		t.Fatal(err)
	}
	for repo, want := range map[string]string{
		"https://github.com/org/repo":      "https://github.com/org/repo.git/info/lfs",
		"https://github.com/org/repo.git":  "https://github.com/org/repo.git/info/lfs",
		"git@github.com:org/repo.git":      "https://github.com/org/repo.git/info/lfs",
		"ssh://git@github.com:22/org/repo": "https://github.com/org/repo.git/info/lfs",
	} {
		u, err := LFSEndpoint(repo)
		if err != nil || u.String() != want {
			t.Errorf("LFSEndpoint(%q) = %v, %v; want %s", repo, u, err, want)
		}
	}
}

// The credentials of a private node's URL go to its LFS host only: when
// the object download is redirected to another host (a CDN; here another
// port of the same address, which Go's client would still trust), the
// request that follows the redirect carries no Authorization.
func TestLFSCredentialsStayOnTheRepoHost(t *testing.T) {
	n := newLFSNode(t)
	n.srv.RequireBasicAuth("x-access-token", testsupport.Secret())
	var mu sync.Mutex
	var seen []string
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		seen = append(seen, req.Header.Get("Authorization"))
		mu.Unlock()
		w.Write(n.weights)
	}))
	t.Cleanup(cdn.Close)
	n.srv.RedirectLFSDownloads(cdn.URL + "/lfs")
	t.Setenv("LFS_TEST_TOKEN", testsupport.Secret())
	n.url = strings.Replace(n.url, "http://", "http://x-access-token:${LFS_TEST_TOKEN}@", 1)
	dir, err := n.checkout(t, testsupport.TempDir(t), n.spec(t, true))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "models/w.safetensors")); !bytes.Equal(got, n.weights) {
		t.Fatal("the object was not fetched from the CDN")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the download did not reach the CDN")
	}
	for _, auth := range seen {
		if auth != "" {
			t.Errorf("the CDN received Authorization %q", auth)
		}
	}
}
