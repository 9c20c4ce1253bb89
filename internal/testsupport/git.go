// Package testsupport starts the real components tests run against: git
// repositories served by git http-backend, and (in later files) an
// HF-like model server, wheels and registries. Written once, used by every
// package's tests.
package testsupport

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Repo is a git working repository made by a test with the real git.
type Repo struct {
	t   testing.TB
	Dir string
}

// NewRepo makes an empty repository whose first branch is main.
func NewRepo(t testing.TB, dir string) *Repo {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Repo{t: t, Dir: dir}
	r.Git("init", "-q", "-b", "main")
	r.Git("config", "user.name", "Test")
	r.Git("config", "user.email", "test@example.invalid")
	r.Git("config", "http.receivepack", "true")
	return r
}

// Git runs git in the repository and returns its trimmed output.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	return Git(r.t, r.Dir, args...)
}

// Git runs git in dir and fails the test on error.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_DATE=2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2024-01-01T00:00:00Z",
		"GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Commit writes files (path -> content; "" content deletes) and commits
// them on the current branch. It returns the new commit id.
func (r *Repo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	for p, content := range files {
		full := filepath.Join(r.Dir, filepath.FromSlash(p))
		if content == "" {
			os.Remove(full)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.Git("add", "-A")
	r.Git("commit", "-q", "--allow-empty", "-m", msg)
	return r.RevParse("HEAD")
}

// RevParse is `git rev-parse <ref>^{commit}`.
func (r *Repo) RevParse(ref string) string {
	r.t.Helper()
	return r.Git("rev-parse", ref+"^{commit}")
}

// FileURL is the repository's file:// URL.
func (r *Repo) FileURL() string { return "file://" + r.Dir }

// GitServer serves the repositories under Root over git's smart HTTP
// protocol with the real git http-backend, hosted by net/http/cgi.
type GitServer struct {
	Root     string
	URL      string
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	log      []string
	auth     atomic.Pointer[string]
	lfs      lfsStore
}

// RequireBasicAuth makes the server answer 401 to requests without this
// user and password, like a private repository on GitHub.
func (gs *GitServer) RequireBasicAuth(user, password string) {
	up := user + ":" + password
	gs.auth.Store(&up)
}

// NewGitServer starts a server for repositories made with Repo under
// t.TempDir(); it stops when the test ends.
func NewGitServer(t testing.TB) *GitServer {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	gs := &GitServer{Root: TempDir(t)}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + gs.Root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	gs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		gs.requests.Add(1)
		gs.mu.Lock()
		gs.log = append(gs.log, req.Method+" "+req.URL.RequestURI())
		gs.mu.Unlock()
		if want := gs.auth.Load(); want != nil {
			if u, p, ok := req.BasicAuth(); !ok || u+":"+p != *want {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		if strings.Contains(req.URL.Path, "/info/lfs/") {
			gs.serveLFS(w, req)
			return
		}
		// Like GitHub, answer for <repo> and <repo>.git alike.
		if i := strings.Index(req.URL.Path, ".git/"); i > 0 {
			if _, err := os.Stat(filepath.Join(gs.Root, req.URL.Path[:i+4])); err != nil {
				req.URL.Path = req.URL.Path[:i] + req.URL.Path[i+4:]
			}
		}
		backend.ServeHTTP(w, req)
	}))
	gs.URL = gs.srv.URL
	t.Cleanup(gs.Close)
	return gs
}

// NewRepo makes a repository served at <URL>/<name>.
func (gs *GitServer) NewRepo(t testing.TB, name string) *Repo {
	return NewRepo(t, filepath.Join(gs.Root, name))
}

// RepoURL is the HTTP URL of a served repository.
func (gs *GitServer) RepoURL(name string) string { return gs.URL + "/" + name }

// Requests counts the HTTP requests served so far.
func (gs *GitServer) Requests() int64 { return gs.requests.Load() }

// RequestLog lists the requests served so far ("GET /a/b/info/refs?...").
func (gs *GitServer) RequestLog() []string {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return append([]string(nil), gs.log...)
}

// Close stops the server; later fetches fail to connect.
func (gs *GitServer) Close() { gs.srv.Close() }
