package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/versions"
)

// site is a whole world for realize: served git repositories, an HF-like
// model server and a folder of wheels.
type site struct {
	*project
	hf     *testsupport.HFServer
	wheels string
	models map[string][]byte // dest -> content
}

func newSite(t *testing.T) *site {
	t.Helper()
	s := &site{project: newProject(t), hf: testsupport.NewHFServer(t), models: map[string][]byte{}}
	testsupport.RequireSweepToken(s.hf)
	s.wheels = filepath.Join(s.dir, "wheels")
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "alpha", Version: "1.0"})
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "beta", Version: "0.5"})
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "beta", Version: "1.2", Requires: []string{"alpha>=1.0"}})
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "gamma", Version: "2.0", Scripts: map[string]string{"gamma-tool": "gamma:main"}})
	s.core.Git("checkout", "-q", "master")
	s.core.Commit("reqs", map[string]string{"requirements.txt": "alpha\n", "custom_nodes/websocket_image_save.py": "# built in\n"})
	s.gguf.Git("checkout", "-q", "main")
	s.gguf.Commit("reqs", map[string]string{"requirements.txt": "beta>=1.0\n"})
	s.gguf.Git("tag", "-f", "-a", "v0.1", "-m", "v0.1")
	s.extra.Commit("reqs", map[string]string{"requirements.txt": "gamma\n", "install.py": "print('setup')\n"})
	vae := randomBytes(t, 150_000)
	unet := randomBytes(t, 400_000)
	s.hf.Add("Comfy-Org/Wan/split/vae/wan_vae.safetensors", vae)
	s.hf.Add("Comfy-Org/Wan/split/unet/wan_unet.gguf", unet)
	s.models["vae/wan_vae.safetensors"] = vae
	s.models["unet/wan_unet.gguf"] = unet
	s.writeSpec(t, ``, `"models": [
    {"source": "hf://Comfy-Org/Wan/split/vae/wan_vae.safetensors", "target_subdir": "vae"},
    {"source": "hf://Comfy-Org/Wan/split/unet/wan_unet.gguf", "name": "unet", "target_subdir": "unet"}
  ],
  "env": {"HF_TOKEN": "${HF_TOKEN}", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},`)
	return s
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeSpec writes versions/demo.json with extra nodes and extra top-level
// fields (models, env, python).
func (s *site) writeSpec(t *testing.T, extraNodes, extraFields string) {
	s.writeSpecWith(t, extraNodes, extraFields)
}

func (s *site) env(extra ...string) []string {
	return append([]string{"COMFY_CACHE=" + s.cache, "HF_ENDPOINT=" + s.hf.URL}, extra...)
}

func (s *site) realize(t *testing.T, target string, args ...string) testsupport.Result {
	t.Helper()
	all := append([]string{"realize", "--version-id", "demo", "--target", target, "--wheels-dir", s.wheels}, args...)
	return testsupport.Run(t, s.dir, s.env(), all...)
}

func TestRealizeLaysOutTheVersion(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	res := s.realize(t, target)
	if res.Code != 0 {
		t.Fatalf("realize exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	l := s.lock(t)
	// Checkouts at the locked commits, no .git, relative links.
	if got := testsupport.Git(t, s.core.Dir, "show", l.Comfy.Commit+":requirements.txt"); readFile(t, target, "ComfyUI/requirements.txt") != got+"\n" {
		t.Error("ComfyUI checkout differs from the commit")
	}
	if _, err := os.Stat(filepath.Join(target, "ComfyUI", ".git")); !os.IsNotExist(err) {
		t.Error("checkout has a .git")
	}
	for _, n := range []string{"gguf", "ComfyUI-KJNodes"} {
		link, err := os.Readlink(filepath.Join(target, "ComfyUI", "custom_nodes", n))
		if err != nil || link != "../../custom_nodes/"+n {
			t.Errorf("link for %s: %q %v", n, link, err)
		}
		if _, err := os.Stat(filepath.Join(target, "ComfyUI", "custom_nodes", n, "requirements.txt")); err != nil {
			t.Errorf("link for %s does not resolve: %v", n, err)
		}
	}
	// The venv imports the wheels, and the lock names them.
	py := filepath.Join(target, ".venv", "bin", "python")
	out, err := exec.Command(py, "-c", "import alpha, beta, gamma; print(alpha.VERSION, beta.VERSION, gamma.VERSION)").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1.0 1.2 2.0" {
		t.Fatalf("venv imports: %s %v", out, err)
	}
	names := map[string]string{}
	for _, p := range l.Python.Packages {
		names[p.Name] = p.Version
		if p.SHA256 == "" || !strings.HasSuffix(p.Wheel, ".whl") {
			t.Errorf("locked package without wheel or hash: %+v", p)
		}
	}
	if names["alpha"] != "1.0" || names["beta"] != "1.2" || names["gamma"] != "2.0" {
		t.Errorf("locked packages %v", names)
	}
	// Console scripts work from the venv and name no absolute path.
	if out, err := exec.Command(filepath.Join(target, ".venv", "bin", "gamma-tool")).CombinedOutput(); err != nil || !strings.Contains(string(out), "gamma 2.0") {
		t.Errorf("console script: %s %v", out, err)
	}
	// Models are hard links into the store and recorded in the lock.
	for dest, content := range s.models {
		if got := readFile(t, target, "models/"+dest); got != string(content) {
			t.Errorf("model %s content differs", dest)
		}
	}
	if len(l.Models) != 2 || l.Models[0].SHA256 == "" || l.Models[0].Revision != s.hf.Commit || l.Models[1].Size != 400_000 {
		t.Errorf("locked models %+v", l.Models)
	}
	if !strings.Contains(res.Stdout, "install.py") || !strings.Contains(res.Stdout, "ComfyUI-KJNodes") {
		t.Errorf("summary does not list the node with install.py:\n%s", res.Stdout)
	}
	if !strings.Contains(readFile(t, target, "comfy.env"), "PYTORCH_CUDA_ALLOC_CONF='expandable_segments:True'") {
		t.Error("literal env missing from comfy.env")
	}
	assertComfyFindsModels(t, target, s.spec(t))
}

func readFile(t *testing.T, dir, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func (s *site) spec(t *testing.T) *versions.Spec {
	sp, err := versions.Load(filepath.Join(s.dir, "versions", "demo.json"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// assertComfyFindsModels reads extra_model_paths.yaml the way ComfyUI's
// loader does (base_path relative to the yaml's folder, each value split on
// newlines, legacy names unet/clip mapped to their new folders) and checks
// every model of the spec is found under a registered folder.
func assertComfyFindsModels(t *testing.T, target string, spec *versions.Spec) {
	t.Helper()
	var doc map[string]map[string]any
	if err := yaml.Unmarshal([]byte(readFile(t, target, "extra_model_paths.yaml")), &doc); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	legacy := map[string]string{"unet": "diffusion_models", "clip": "text_encoders"}
	registered := map[string][]string{} // folder -> dirs
	for _, conf := range doc {
		base, _ := conf["base_path"].(string)
		if !filepath.IsAbs(base) {
			base = filepath.Join(target, base)
		}
		for key, v := range conf {
			if key == "base_path" || key == "is_default" {
				continue
			}
			str, ok := v.(string)
			if !ok {
				t.Fatalf("%s is %T, ComfyUI needs a string", key, v)
			}
			folder := key
			if l, ok := legacy[key]; ok {
				folder = l
			}
			for _, line := range strings.Split(str, "\n") {
				if line = strings.TrimSpace(line); line != "" {
					registered[folder] = append(registered[folder], filepath.Join(base, line))
				}
			}
		}
	}
	for _, f := range []string{"checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "controlnet", "upscale_models", "embeddings", "model_patches", "audio_encoders"} {
		if len(registered[f]) == 0 {
			t.Errorf("folder %s not registered", f)
		}
	}
	for _, m := range spec.Models {
		found := false
		for _, dirs := range registered {
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(d, strings.TrimPrefix(m.Dest(), m.TargetSubdir+"/"))); err == nil && filepath.Base(d) == m.TargetSubdir {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("model %s is in no registered folder: %v", m.Dest(), registered)
		}
	}
}

// snapshot maps every path under dir to its type, mode and content, for
// comparing two targets.
func snapshot(t *testing.T, dir string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+"/") {
				if fi.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "link " + l
		case fi.IsDir():
			out[rel] = "dir"
		default:
			data, _ := os.ReadFile(p)
			out[rel] = fmt.Sprintf("%v %x", fi.Mode().Perm(), data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRerunIsANoOpWithoutNetwork(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target); res.Code != 0 {
		t.Fatalf("first realize: %s", res.Stderr)
	}
	before := snapshot(t, target, ".comfy-image")
	gitReqs, hfReqs := s.srv.Requests(), len(s.hf.Requests())
	// With --locked the lock is the truth: no request at all (an online
	// rerun lists each repository's refs: TestRealizeResolvesRefsAfresh...).
	res := s.realize(t, target, "--locked")
	if res.Code != 0 {
		t.Fatalf("rerun: %s", res.Stderr)
	}
	if s.srv.Requests() != gitReqs || len(s.hf.Requests()) != hfReqs {
		t.Fatalf("rerun used the network: git %d->%d, hf %d->%d", gitReqs, s.srv.Requests(), hfReqs, len(s.hf.Requests()))
	}
	if strings.Contains(res.Stderr, "pip:") {
		t.Fatalf("rerun ran pip:\n%s", res.Stderr)
	}
	after := snapshot(t, target, ".comfy-image")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatal("rerun changed the target")
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	res := s.realize(t, target, "--dry-run")
	if res.Code != 0 {
		t.Fatalf("dry run: %s", res.Stderr)
	}
	for _, p := range []string{target, s.cache} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("--dry-run created %s", p)
		}
	}
	for _, want := range []string{"(clone " + s.srv.RepoURL("city96/ComfyUI-GGUF") + " first)", "no lock yet, it would be written", "python3 -m venv", "--find-links " + s.wheels, "download    hf://Comfy-Org/Wan/split/unet/wan_unet.gguf (390.6 KiB)", "diffusion_models: |", "ComfyUI/custom_nodes/gguf -> ../../custom_nodes/gguf"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, res.Stdout)
		}
	}
	// After a realize, the plan shows the models in place (unchanged) and
	// the locked packages (--offline is another venv key: reinstalled).
	if res := s.realize(t, target); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	before := snapshot(t, target)
	res = s.realize(t, target, "--dry-run", "--offline")
	if res.Code != 0 || !strings.Contains(res.Stdout, "unchanged   "+filepath.Join(target, "models", "unet", "wan_unet.gguf")) || !strings.Contains(res.Stdout, "locked packages") {
		t.Fatalf("plan after realize:\n%s\n%s", res.Stdout, res.Stderr)
	}
	if fmt.Sprint(before) != fmt.Sprint(snapshot(t, target)) {
		t.Fatal("--dry-run changed the target")
	}
}

func TestUserChangesAreKept(t *testing.T) {
	s := newSite(t)
	target := filepath.Join(s.dir, "target")
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	// The user adds files and edits a tracked one; the node moves on.
	os.WriteFile(filepath.Join(target, "custom_nodes", "gguf", "my_notes.txt"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(target, "ComfyUI", "user_workflow.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(target, "custom_nodes", "gguf", "__init__.py"), []byte("# patched by hand\n"), 0o644)
	s.gguf.Git("checkout", "-q", "main")
	s.gguf.Commit("update", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {'x': 1}", "new.py": "y = 1"})
	s.gguf.Git("tag", "-f", "-a", "v0.1", "-m", "moved")
	if res := s.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	res := s.realize(t, target, "--skip-models")
	if res.Code != 1 || !strings.Contains(res.Stderr, "__init__.py") || !strings.Contains(res.Stderr, "--force") {
		t.Fatalf("a changed tracked file was not reported: exit %d\n%s", res.Code, res.Stderr)
	}
	if readFile(t, target, "custom_nodes/gguf/__init__.py") != "# patched by hand\n" {
		t.Fatal("the user's edit was overwritten")
	}
	res = s.realize(t, target, "--skip-models", "--force")
	if res.Code != 0 {
		t.Fatalf("--force: %s", res.Stderr)
	}
	if readFile(t, target, "custom_nodes/gguf/__init__.py") != "NODE_CLASS_MAPPINGS = {'x': 1}" || readFile(t, target, "custom_nodes/gguf/new.py") != "y = 1" {
		t.Fatal("--force did not update the node")
	}
	if readFile(t, target, "custom_nodes/gguf/my_notes.txt") != "mine" || readFile(t, target, "ComfyUI/user_workflow.json") != "{}" {
		t.Fatal("files the user added were lost")
	}
}

func TestSecretNeverWritten(t *testing.T) {
	s := newSite(t)
	token := testsupport.Secret()
	s.hf.RequireToken(token)
	target := filepath.Join(s.dir, "target")
	all := []string{"realize", "--version-id", "demo", "--target", target, "--wheels-dir", s.wheels}
	res := testsupport.Run(t, s.dir, s.env("HF_TOKEN="+token), all...)
	if res.Code != 0 {
		t.Fatalf("realize with token: %s", res.Stderr)
	}
	// A failing run too: a refused token and a missing model.
	s.hf.RequireToken("another-token")
	os.RemoveAll(filepath.Join(s.cache, "models"))
	os.Remove(versions.LockPath(s.cache, "demo"))
	failed := testsupport.Run(t, s.dir, s.env("HF_TOKEN="+token), append(all, "--target", filepath.Join(s.dir, "t2"))...)
	if failed.Code == 0 || !strings.Contains(failed.Stderr, "refused") {
		t.Fatalf("refused token run: exit %d\n%s", failed.Code, failed.Stderr)
	}
	for _, out := range []string{res.Stdout, res.Stderr, failed.Stdout, failed.Stderr} {
		if strings.Contains(out, token) {
			t.Fatal("the token was printed")
		}
	}
	for _, root := range []string{target, s.cache, filepath.Join(s.dir, "t2")} {
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				if data, _ := os.ReadFile(p); strings.Contains(string(data), token) {
					t.Errorf("the token is in %s", p)
				}
			}
			return nil
		})
	}
}

func TestKilledRealizeResumes(t *testing.T) {
	s := newSite(t)
	clean := filepath.Join(s.dir, "clean")
	if res := s.realize(t, clean); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	want := snapshot(t, clean, ".comfy-image")
	// Same version, fresh cache and target.
	s.cache = filepath.Join(s.dir, "cache2")
	target := filepath.Join(s.dir, "target")
	args := []string{"realize", "--version-id", "demo", "--target", target, "--wheels-dir", s.wheels}

	// First killed while pip works, then killed mid-download.
	p := testsupport.Start(t, s.dir, s.env(), args...)
	p.KillWhen(t, "pip: ", 0)

	s.hf.Throttle(100_000)
	p = testsupport.Start(t, s.dir, s.env(), args...)
	p.KillWhen(t, "wan_unet.gguf: started", 1500*time.Millisecond)
	parts, _ := filepath.Glob(filepath.Join(s.cache, "models", "tmp", "*.part"))
	if len(parts) == 0 {
		t.Fatal("no partial download after the kill")
	}
	s.hf.Throttle(0)

	res := testsupport.Run(t, s.dir, s.env(), args...)
	if res.Code != 0 {
		t.Fatalf("resumed realize: %s", res.Stderr)
	}
	resumed := false
	for _, r := range s.hf.Requests() {
		if r.Host == "cdn" && strings.HasPrefix(r.Range, "bytes=") {
			resumed = true
		}
	}
	if !resumed {
		t.Error("the killed download was not resumed with a Range request")
	}
	got := snapshot(t, target, ".comfy-image")
	for p, v := range want {
		if got[p] != v {
			t.Errorf("%s differs from a clean realize", p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s is extra after the resumed realize", p)
		}
	}
}

// addNode serves one more node repository with the given requirements and
// returns its spec entry.
func (s *site) addNode(t *testing.T, name, requirements string) string {
	r := s.srv.NewRepo(t, "someone/"+name)
	r.Commit("init", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "requirements.txt": requirements})
	return fmt.Sprintf(`, {"repo": %q}`, s.srv.RepoURL("someone/"+name))
}

func TestConflictingNodesAreNamed(t *testing.T) {
	s := newSite(t)
	s.writeSpec(t, s.addNode(t, "ComfyUI-Old", "beta<1.0\n"), "")
	res := s.realize(t, filepath.Join(s.dir, "target"), "--skip-models")
	if res.Code != 1 {
		t.Fatalf("exit %d, want 1\n%s", res.Code, res.Stderr)
	}
	for _, want := range []string{"node gguf requires beta>=1.0", "node ComfyUI-Old requires beta<1.0"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.Stderr)
		}
	}
}

func TestNodesCannotReplaceTorch(t *testing.T) {
	s := newSite(t)
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "torch", Version: "2.0.0"})
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "torch", Version: "2.5.0"})
	s.writeSpec(t, s.addNode(t, "TorchHungry", "torch>=2.5\n"), `"python": {"requirements": ["torch==2.0.0"]},`)
	res := s.realize(t, filepath.Join(s.dir, "target"), "--skip-models")
	if res.Code != 1 || !strings.Contains(res.Stderr, "node TorchHungry requires torch>=2.5 (held back: the version has torch==2.0.0)") {
		t.Fatalf("exit %d:\n%s", res.Code, res.Stderr)
	}
	// Without the greedy node the chosen torch is installed.
	s.writeSpec(t, s.addNode(t, "TorchHappy", "torch\n"), `"python": {"requirements": ["torch==2.0.0"]},`)
	target := filepath.Join(s.dir, "ok")
	if res := s.realize(t, target, "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	out, err := exec.Command(filepath.Join(target, ".venv", "bin", "python"), "-c", "import torch; print(torch.VERSION)").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "2.0.0" {
		t.Fatalf("torch in the venv: %s %v", out, err)
	}
}

func TestOfflineRealizeFromCache(t *testing.T) {
	s := newSite(t)
	if res := s.realize(t, filepath.Join(s.dir, "first")); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	s.srv.Close()
	target := filepath.Join(s.dir, "second")
	res := s.realize(t, target, "--offline")
	if res.Code != 0 {
		t.Fatalf("offline realize: %s", res.Stderr)
	}
	if fmt.Sprint(snapshot(t, filepath.Join(s.dir, "first"), ".comfy-image")) != fmt.Sprint(snapshot(t, target, ".comfy-image")) {
		t.Fatal("offline target differs from the online one")
	}
	// A model the cache lacks is a clear error naming it.
	os.RemoveAll(filepath.Join(s.cache, "models"))
	res = s.realize(t, filepath.Join(s.dir, "third"), "--offline")
	if res.Code != 1 || !strings.Contains(res.Stderr, "wan_unet.gguf") || !strings.Contains(res.Stderr, "--offline") {
		t.Fatalf("offline without the model: exit %d\n%s", res.Code, res.Stderr)
	}
}

func TestLockedInstallsExactlyTheLockedSet(t *testing.T) {
	s := newSite(t)
	res := s.realize(t, filepath.Join(s.dir, "t"), "--locked")
	if res.Code != 1 || !strings.Contains(res.Stderr, "--locked") {
		t.Fatalf("--locked without a lock: exit %d\n%s", res.Code, res.Stderr)
	}
	if res := s.realize(t, filepath.Join(s.dir, "first"), "--skip-models"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	// A newer beta appears in the wheels folder; the locked set still wins.
	testsupport.BuildWheel(t, s.wheels, testsupport.Wheel{Name: "beta", Version: "1.5"})
	target := filepath.Join(s.dir, "second")
	if res := s.realize(t, target, "--skip-models", "--locked"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	out, _ := exec.Command(filepath.Join(target, ".venv", "bin", "python"), "-c", "import beta; print(beta.VERSION)").CombinedOutput()
	if strings.TrimSpace(string(out)) != "1.2" {
		t.Fatalf("--locked installed beta %s, want the locked 1.2", out)
	}
}

func TestTwoVersionsRealizeAtOnceOnOneCache(t *testing.T) {
	s := newSite(t)
	spec := readFile(t, s.dir, "versions/demo.json")
	other := strings.Replace(spec, `"version_id": "demo"`, `"version_id": "other"`, 1)
	other = strings.Replace(other, `"ref": "v0.1"`, `"ref": "main"`, 1)
	os.WriteFile(filepath.Join(s.dir, "versions", "other.json"), []byte(other), 0o644)
	s.hf.Throttle(400_000)
	a := testsupport.Start(t, s.dir, s.env(), "realize", "--version-id", "demo", "--target", filepath.Join(s.dir, "a"), "--wheels-dir", s.wheels)
	b := testsupport.Start(t, s.dir, s.env(), "realize", "--version-id", "other", "--target", filepath.Join(s.dir, "b"), "--wheels-dir", s.wheels)
	for _, p := range []*testsupport.Proc{a, b} {
		for range p.Lines {
		}
		if err := p.Cmd.Wait(); err != nil {
			t.Fatalf("%v: %v", p.Cmd.Args, err)
		}
	}
	for _, dir := range []string{"a", "b"} {
		for dest, content := range s.models {
			if readFile(t, filepath.Join(s.dir, dir), "models/"+dest) != string(content) {
				t.Errorf("%s: model %s wrong", dir, dest)
			}
		}
	}
	mirrors, _ := filepath.Glob(filepath.Join(s.cache, "git", "*", "*", "*.git"))
	for _, m := range mirrors {
		if out, err := exec.Command("git", "-C", m, "fsck", "--full").CombinedOutput(); err != nil {
			t.Fatalf("fsck %s: %s", m, out)
		}
	}
}

func TestSystemSitePackagesAndSkipModelsOption(t *testing.T) {
	s := newSite(t)
	s.writeSpec(t, "", `"python": {"system_site_packages": true}, "options": {"skip_models": true},
  "models": [{"source": "hf://Comfy-Org/Wan/split/vae/wan_vae.safetensors", "target_subdir": "vae"}],`)
	target := filepath.Join(s.dir, "target")
	res := s.realize(t, target)
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if !strings.Contains(readFile(t, target, ".venv/pyvenv.cfg"), "include-system-site-packages = true") {
		t.Error("the venv does not see the system site packages")
	}
	if _, err := os.Stat(filepath.Join(target, "models", "vae")); !os.IsNotExist(err) {
		t.Error("options.skip_models did not skip the models")
	}
	// The flag overrides the spec's option.
	if res := s.realize(t, target, "--skip-models=false"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(target, "models", "vae", "wan_vae.safetensors")); err != nil {
		t.Error("--skip-models=false did not override options.skip_models")
	}
}
