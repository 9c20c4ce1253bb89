package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// writeManagerSnapshot writes a snapshot the way ComfyUI-Manager saves one:
// Python's json.dump(get_current_snapshot(), f, indent=4).
func writeManagerSnapshot(t *testing.T, file, pythonDict string) {
	t.Helper()
	prog := fmt.Sprintf("import json\nwith open(%q, 'w') as f:\n    json.dump(%s, f, indent=4)\n", file, pythonDict)
	if out, err := exec.Command("python3", "-c", prog).CombinedOutput(); err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
}

// TestSnapshotRoundTrip: a Manager snapshot (git nodes at commits on the
// test's git server, a disabled node, a registry node on the test's
// registry, a single-file node, pips) imports into a spec that locks,
// realizes and builds; the export of that lock is in Manager's exact format
// and imports back to the same spec.
func TestSnapshotRoundTrip(t *testing.T) {
	s := newSite(t)
	reg := testsupport.NewComfyRegistry(t)
	reg.Publish(t, "comfyui-reg-node", "1.1.0", map[string]string{"__init__.py": "old = True\n"})
	reg.Publish(t, "comfyui-reg-node", "1.2.0", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}  # from the registry\n", "requirements.txt": "alpha\n"})
	reg.Publish(t, "comfyui-reg-node", "1.3.0", map[string]string{"__init__.py": "newer = True\n"})
	env := s.env("COMFY_REGISTRY_URL=" + reg.URL)
	run := func(args ...string) testsupport.Result { return testsupport.Run(t, s.dir, env, args...) }
	off := s.srv.NewRepo(t, "someone/ComfyUI-Disabled")
	offCommit := off.Commit("off", map[string]string{"__init__.py": "raise SystemExit('disabled node imported')\n"})
	coreCommit := s.core.RevParse("master")
	ggufCommit := s.gguf.RevParse("main")
	kjCommit := s.extra.RevParse("HEAD")
	snap := filepath.Join(s.dir, "2024-05-01_10-00-00_snapshot.json")
	writeManagerSnapshot(t, snap, fmt.Sprintf(`{
    'comfyui': %q,
    'git_custom_nodes': {
        %q: {'hash': %q, 'disabled': False},
        %q: {'hash': %q, 'disabled': False},
        %q: {'hash': %q, 'disabled': True},
    },
    'cnr_custom_nodes': {'comfyui-reg-node': '1.2.0'},
    'file_custom_nodes': [{'filename': 'my_node.py', 'disabled': False}],
    'pips': {'alpha==1.0': '', 'Beta==1.2': '', 'gamma==2.0': ''},
}`, coreCommit, s.srv.RepoURL("city96/ComfyUI-GGUF"), ggufCommit, s.srv.RepoURL("kijai/ComfyUI-KJNodes.git"), kjCommit,
		s.srv.RepoURL("someone/ComfyUI-Disabled"), offCommit))

	core := s.srv.RepoURL("comfyanonymous/ComfyUI")
	res := run("import", "snapshot", snap, "--version-id", "demo", "--comfy-repo", core, "--force")
	if res.Code != 0 {
		t.Fatalf("import exit %d\n%s", res.Code, res.Stderr)
	}
	for _, want := range []string{"left out: git_custom_nodes[\"" + s.srv.RepoURL("someone/ComfyUI-Disabled") + "\"]: disabled", "left out: file_custom_nodes[0] (my_node.py)"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.Stderr)
		}
	}
	spec := s.spec(t)
	if spec.Comfy.Repo != core || spec.Comfy.Commit != coreCommit {
		t.Errorf("core %+v", spec.Comfy)
	}
	got := map[string]string{}
	for _, n := range spec.CustomNodes {
		got[n.Name] = n.Commit
	}
	if len(got) != 3 || got["ComfyUI-GGUF"] != ggufCommit || got["ComfyUI-KJNodes"] != kjCommit {
		t.Errorf("nodes %v", got)
	}
	if n := spec.CustomNodes[2]; n.Registry != "comfyui-reg-node" || n.Version != "1.2.0" {
		t.Errorf("registry node %+v", n)
	}
	if strings.Join(spec.Python.Requirements, " ") != "alpha==1.0 beta==1.2 gamma==2.0" {
		t.Errorf("requirements %q", spec.Python.Requirements)
	}

	// The spec locks and realizes: checkouts at the snapshot's commits,
	// the disabled node nowhere, the pips installed.
	if res := run("lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatalf("lock exit %d\n%s", res.Code, res.Stderr)
	}
	target := filepath.Join(s.dir, "target")
	if res := run("realize", "--version-id", "demo", "--target", target, "--wheels-dir", s.wheels); res.Code != 0 {
		t.Fatalf("realize exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	l := s.lock(t)
	if l.Comfy.Commit != coreCommit || len(l.CustomNodes) != 3 || l.CustomNodes[2].Version != "1.2.0" || len(l.CustomNodes[2].SHA256) != 64 {
		t.Fatalf("lock %+v", l)
	}
	if got := readFile(t, target, "ComfyUI/custom_nodes/comfyui-reg-node/__init__.py"); !strings.Contains(got, "from the registry") {
		t.Errorf("registry node laid out as %q", got)
	}
	if readFile(t, target, "custom_nodes/ComfyUI-GGUF/requirements.txt") != "beta>=1.0\n" {
		t.Error("GGUF checkout differs from its commit")
	}
	if _, err := os.Stat(filepath.Join(target, "custom_nodes", "ComfyUI-Disabled")); !os.IsNotExist(err) {
		t.Error("the disabled node was realized")
	}
	out, err := exec.Command(filepath.Join(target, ".venv", "bin", "python"), "-c", "import alpha, beta, gamma; print(beta.VERSION)").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1.2" {
		t.Errorf("venv: %s %v", out, err)
	}

	// Export: Manager's format, byte for byte as Python's json.dump writes it.
	exported := filepath.Join(s.dir, "exported.json")
	if res := run("export", "snapshot", "--version-id", "demo", "--output", exported); res.Code != 0 || strings.Contains(res.Stderr, "no pip list") {
		t.Fatalf("export exit %d (a realized version has its pip list)\n%s", res.Code, res.Stderr)
	}
	redumped := filepath.Join(s.dir, "redumped.json")
	writeManagerSnapshot(t, redumped, fmt.Sprintf("json.load(open(%q))", exported))
	if a, b := readFile(t, s.dir, "exported.json"), readFile(t, s.dir, "redumped.json"); a != b {
		t.Errorf("export is not what json.dump(indent=4) writes:\n%s\nwant:\n%s", a, b)
	}
	for _, want := range []string{`"comfyui": "` + coreCommit + `"`, `"cnr_custom_nodes": {` + "\n        " + `"comfyui-reg-node": "1.2.0"`, `"hash": "` + ggufCommit + `",` + "\n            \"disabled\": false", `"alpha==1.0": ""`, `"file_custom_nodes": []`} {
		if !strings.Contains(readFile(t, s.dir, "exported.json"), want) {
			t.Errorf("export lacks %q", want)
		}
	}

	// And it imports back to the same spec.
	again := filepath.Join(s.dir, "again.json")
	if res := run("import", "snapshot", exported, "--version-id", "demo", "--comfy-repo", core, "--output", again); res.Code != 0 {
		t.Fatalf("re-import exit %d\n%s", res.Code, res.Stderr)
	}
	if a, b := readFile(t, s.dir, "versions/demo.json"), readFile(t, s.dir, "again.json"); a != b {
		t.Errorf("re-imported spec differs:\n%s\nfirst:\n%s", b, a)
	}

	// The version builds: the registry node is a layer of its own, at its locked commit.
	oci := registryForBuild(t)
	ref := oci + "/comfy/demo:v1"
	if res := run("build", "--version-id", "demo", "--base", testsupport.SyntheticBase(t), "--wheels-dir", s.wheels, "--push", ref); res.Code != 0 {
		t.Fatalf("build exit %d\n%s", res.Code, res.Stderr)
	}
	insp := run("inspect", "--json", ref)
	var info struct {
		Layers []struct{ Part, Name, Commit string }
	}
	if err := json.Unmarshal([]byte(insp.Stdout), &info); err != nil {
		t.Fatalf("inspect: %v\n%s", err, insp.Stderr)
	}
	found := false
	for _, layer := range info.Layers {
		if layer.Part == "node" && layer.Name == "comfyui-reg-node" && layer.Commit == l.CustomNodes[2].Commit {
			found = true
		}
	}
	if !found {
		t.Errorf("no layer for the registry node at %s: %+v", l.CustomNodes[2].Commit, info.Layers)
	}
}

func registryForBuild(t *testing.T) string { return testsupport.NewRegistry(t).Host }

func TestImportSnapshotBadInput(t *testing.T) {
	dir := testsupport.TempDir(t)
	bad := filepath.Join(dir, "snap.json")
	os.WriteFile(bad, []byte(`{"comfyui": null, "git_custom_nodes": {"https://github.com/a/b": {"hash": "main", "disabled": false}}}`), 0o644)
	res := testsupport.Run(t, dir, nil, "import", "snapshot", bad, "--version-id", "x")
	if res.Code != 2 || !strings.Contains(res.Stderr, bad+`: git_custom_nodes["https://github.com/a/b"].hash: "main": expected a 40-character`) {
		t.Errorf("exit %d\n%s", res.Code, res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "versions")); !os.IsNotExist(err) {
		t.Error("a bad snapshot wrote something")
	}
	if res := testsupport.Run(t, dir, nil, "import", "snapshot", filepath.Join(dir, "missing.json")); res.Code != 2 || !strings.Contains(res.Stderr, "missing.json: file not found") {
		t.Errorf("missing file: exit %d\n%s", res.Code, res.Stderr)
	}
	if res := testsupport.Run(t, dir, []string{"COMFY_CACHE=" + dir}, "export", "snapshot", "--version-id", "nope"); res.Code == 0 || !strings.Contains(res.Stderr, "comfy-image lock") {
		t.Errorf("export without lock: exit %d\n%s", res.Code, res.Stderr)
	}
}
