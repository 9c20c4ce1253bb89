package testsupport

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// DockerRegistry is Debian's docker-registry (the CNCF distribution
// registry) serving plain HTTP on 127.0.0.1, with its access log kept so a
// test can count blob uploads.
type DockerRegistry struct {
	Host string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
}

// NewDockerRegistry starts docker-registry; it stops when the test ends.
func NewDockerRegistry(t testing.TB) *DockerRegistry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry not installed (apt-get install docker-registry): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	dir := TempDir(t)
	conf := filepath.Join(dir, "config.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)), 0o644)
	r := &DockerRegistry{Host: host, cmd: exec.Command(bin, "serve", conf)}
	r.cmd.Stdout, r.cmd.Stderr = r, r
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + host + "/v2/"); err == nil {
			resp.Body.Close()
			return r
		}
	}
	t.Fatalf("docker-registry did not start:\n%s", r.Log())
	return nil
}

func (r *DockerRegistry) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.Write(p)
}

// Log is everything the registry printed.
func (r *DockerRegistry) Log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// Uploads counts completed blob uploads (PUT .../blobs/uploads/...) so far.
func (r *DockerRegistry) Uploads() int {
	n := 0
	for _, line := range strings.Split(r.Log(), "\n") {
		if strings.Contains(line, `"PUT /v2/`) && strings.Contains(line, "/blobs/uploads/") {
			n++
		}
	}
	return n
}
