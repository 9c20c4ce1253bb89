// Package check runs a built app image in podman or docker and reports
// what a user would find broken at start: custom nodes that failed to
// import (with the error, such as a missing shared library), models of the
// spec that ComfyUI does not list, and how long ComfyUI took to answer.
package check

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Options are the settings of `comfy-image check`.
type Options struct {
	// Engine is podman or docker ("": podman, else docker, whichever is installed).
	Engine string
	// ModelsImage is mounted at /models; ModelsDir is bound there instead.
	ModelsImage string
	ModelsDir   string
	// RunArgs go to `run` before the image; ComfyArgs after it (ComfyUI's).
	RunArgs   []string
	ComfyArgs []string
	// Timeout bounds the wait for ComfyUI (0: 10 minutes).
	Timeout time.Duration
	Log     io.Writer
}

// Report is what the check found.
type Report struct {
	Image        string        `json:"image"`
	OK           bool          `json:"ok"`
	StartSeconds float64       `json:"start_seconds"`
	FailedNodes  []FailedNode  `json:"failed_nodes"`
	MissingModel []MissingFile `json:"missing_models"`
	// Error is set when ComfyUI did not come up at all.
	Error string `json:"error,omitempty"`
}

// FailedNode is a custom node ComfyUI could not import.
type FailedNode struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	Error string `json:"error,omitempty"`
}

// MissingFile is a model of the spec that ComfyUI does not list.
type MissingFile struct {
	Dest   string `json:"dest"`
	Folder string `json:"folder"`
}

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	for _, n := range r.FailedNodes {
		fmt.Fprintf(w, "custom node %s failed to import: %s\n", n.Name, n.Error)
	}
	for _, m := range r.MissingModel {
		fmt.Fprintf(w, "model %s is not listed by ComfyUI in folder %s\n", m.Dest, m.Folder)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "ComfyUI did not start: %s\n", r.Error)
	}
	verdict := "ok"
	if !r.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "%s: %s (ComfyUI answered after %.1fs)\n", r.Image, verdict, r.StartSeconds)
}

// Engine picks podman, else docker.
func Engine(name string) (string, error) {
	if name != "" {
		return exec.LookPath(name)
	}
	for _, e := range []string{"podman", "docker"} {
		if p, err := exec.LookPath(e); err == nil {
			return p, nil
		}
	}
	return "", errors.New("comfy-image check needs podman or docker; neither is installed")
}

// Run starts the image, waits for ComfyUI and checks it.
func Run(ctx context.Context, image string, opts Options) (*Report, error) {
	engine, err := Engine(opts.Engine)
	if err != nil {
		return nil, err
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"run", "-d", "-p", "127.0.0.1:" + port + ":8188"}, opts.RunArgs...)
	switch {
	case opts.ModelsDir != "":
		dir, err := modelsDir(opts.ModelsDir)
		if err != nil {
			return nil, err
		}
		args = append(args, "-v", dir+":/models:ro")
	case opts.ModelsImage != "":
		args = append(args, "--mount", "type=image,source="+opts.ModelsImage+",destination=/models")
	}
	args = append(append(args, image), opts.ComfyArgs...)
	start := time.Now()
	out, err := exec.CommandContext(ctx, engine, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s run %s: %v: %s", path.Base(engine), image, err, strings.TrimSpace(string(out)))
	}
	id := lastLine(string(out))
	defer exec.Command(engine, "rm", "-f", id).Run()
	fmt.Fprintf(opts.Log, "started %s as container %.12s\n", image, id)

	rep := &Report{Image: image, FailedNodes: []FailedNode{}, MissingModel: []MissingFile{}}
	base := "http://127.0.0.1:" + port
	waitErr := waitComfy(ctx, engine, id, base, opts.Timeout)
	rep.StartSeconds = time.Since(start).Seconds()
	logs, _ := exec.Command(engine, "logs", id).CombinedOutput()
	rep.FailedNodes = FailedNodes(string(logs))
	if waitErr != nil {
		rep.Error = waitErr.Error()
		return rep, nil
	}
	manifest, err := exec.CommandContext(ctx, engine, "exec", id, "cat", "/opt/comfy/comfy-image.json").Output()
	if err != nil {
		return nil, fmt.Errorf("reading /opt/comfy/comfy-image.json in %s (not an image of comfy-image?): %w", image, err)
	}
	if rep.MissingModel, err = missingModels(ctx, base, manifest); err != nil {
		return nil, err
	}
	rep.OK = len(rep.FailedNodes) == 0 && len(rep.MissingModel) == 0
	return rep, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port), nil
}

// waitComfy polls ComfyUI until it answers, the container stops or the
// timeout passes.
func waitComfy(ctx context.Context, engine, id, base string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		if resp, err := client.Get(base + "/models"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		state, err := exec.Command(engine, "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", id).Output()
		if err == nil && strings.HasPrefix(string(state), "false") {
			return fmt.Errorf("the container exited (running, exit code: %s)", strings.TrimSpace(string(state)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ComfyUI did not answer within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var (
	cannotImport = regexp.MustCompile(`Cannot import (\S+) module for custom nodes: (.*)$`)
	importFailed = regexp.MustCompile(`\(IMPORT FAILED\): (\S+)\s*$`)
)

// FailedNodes reads ComfyUI's log: the "IMPORT FAILED" lines of its import
// times, each with the error of its "Cannot import ... module" line.
func FailedNodes(log string) []FailedNode {
	reasons := map[string]string{}
	var failed []FailedNode
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := cannotImport.FindStringSubmatch(line); m != nil {
			reasons[m[1]] = strings.TrimSpace(m[2])
		}
		if m := importFailed.FindStringSubmatch(line); m != nil && !seen[m[1]] {
			seen[m[1]] = true
			failed = append(failed, FailedNode{Name: path.Base(m[1]), Path: m[1]})
		}
	}
	for i := range failed {
		failed[i].Error = reasons[failed[i].Path]
		if failed[i].Error == "" {
			failed[i].Error = "see the log above its IMPORT FAILED line"
		}
	}
	sort.Slice(failed, func(a, b int) bool { return failed[a].Name < failed[b].Name })
	if failed == nil {
		failed = []FailedNode{}
	}
	return failed
}

// missingModels asks ComfyUI (/models/<folder>) for each model of the
// image's manifest.
func missingModels(ctx context.Context, base string, manifest []byte) ([]MissingFile, error) {
	var m struct {
		Models []struct{ Dest, Folder string }
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("comfy-image.json: %w", err)
	}
	listed := map[string]map[string]bool{}
	missing := []MissingFile{}
	for _, model := range m.Models {
		if listed[model.Folder] == nil {
			files, err := folderFiles(ctx, base, model.Folder)
			if err != nil {
				return nil, err
			}
			listed[model.Folder] = files
		}
		if !listed[model.Folder][strings.TrimPrefix(model.Dest, model.Folder+"/")] {
			missing = append(missing, MissingFile{Dest: model.Dest, Folder: model.Folder})
		}
	}
	return missing, nil
}

func folderFiles(ctx context.Context, base, folder string) (map[string]bool, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/models/"+folder, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	files := map[string]bool{}
	if resp.StatusCode == http.StatusNotFound {
		return files, nil // ComfyUI does not know the folder: nothing listed
	}
	var list []string
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("ComfyUI /models/%s: %w", folder, err)
	}
	for _, f := range list {
		files[f] = true
	}
	return files, nil
}

// modelsDir is the --models-dir folder as an absolute path: podman and
// docker take a bare name ("models") for a named volume, which would mount
// an empty volume and report every model missing.
func modelsDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("--models-dir %s: %w", dir, err)
	}
	return abs, nil
}
