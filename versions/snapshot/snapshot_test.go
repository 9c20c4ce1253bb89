package snapshot

import (
	"encoding/json"
	"errors"
	"github.com/comfy-image/comfy-image/internal/testsupport"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/versions"
)

const (
	coreCommit = "1111111111111111111111111111111111111111"
	nodeCommit = "2222222222222222222222222222222222222222"
	offCommit  = "3333333333333333333333333333333333333333"
)

// managerSnapshot is what get_current_snapshot returns, as a Python literal.
const managerSnapshot = `{
    'comfyui': '` + coreCommit + `',
    'git_custom_nodes': {
        'https://github.com/city96/ComfyUI-GGUF': {'hash': '` + nodeCommit + `', 'disabled': False},
        'https://github.com/kijai/ComfyUI-KJNodes.git': {'hash': '` + offCommit + `', 'disabled': True},
    },
    'cnr_custom_nodes': {'comfyui-impact-pack': '8.8.1'},
    'file_custom_nodes': [{'filename': 'websocket_image_save.py', 'disabled': False}],
    'pips': {'PyYAML==6.0.1': '', 'Pillow==10.0.0': '', 'mylib': 'file:///wheels/mylib-1.0-py3-none-any.whl', '-e git+https://x/y#egg=y': ''},
}`

// python runs a Python program that writes the snapshot the way Manager
// saves it (json.dump indent=4, or yaml.dump of {'custom_nodes': ...}).
func python(t *testing.T, program string) {
	t.Helper()
	if out, err := exec.Command("python3", "-c", program).CombinedOutput(); err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
}

func TestImportManagerJSONAndYAMLGiveTheSameSpec(t *testing.T) {
	dir := testsupport.TempDir(t)
	jsonFile, yamlFile := filepath.Join(dir, "snap.json"), filepath.Join(dir, "snap.yaml")
	python(t, "import json\njson.dump("+managerSnapshot+", open('"+jsonFile+"', 'w'), indent=4)")
	python(t, "import yaml\nyaml.dump({'custom_nodes': "+managerSnapshot+"}, open('"+yamlFile+"', 'w'), allow_unicode=True)")
	var specs []string
	for _, file := range []string{jsonFile, yamlFile} {
		f, err := Read(file)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Import(f, ImportOptions{VersionID: "imported", SpecFile: "versions/imported.json"})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		specs = append(specs, string(res.Spec))
		left := strings.Join(res.LeftOut, "\n")
		for _, want := range []string{"ComfyUI-KJNodes.git", "disabled", "websocket_image_save.py", "-e git+", "pips[\"mylib\"]"} {
			if !strings.Contains(left, want) {
				t.Errorf("%s: left-out list lacks %q:\n%s", file, want, left)
			}
		}
	}
	if specs[0] != specs[1] {
		t.Errorf("JSON and YAML snapshots give different specs:\n%s\n%s", specs[0], specs[1])
	}
	s, err := versions.Parse("imported.json", []byte(specs[0]), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Comfy.Repo != DefaultComfyRepo || s.Comfy.Commit != coreCommit {
		t.Errorf("core %+v", s.Comfy)
	}
	if len(s.CustomNodes) != 2 || s.CustomNodes[0].Repo.Repo != "https://github.com/city96/ComfyUI-GGUF" || s.CustomNodes[0].Commit != nodeCommit || s.CustomNodes[0].Name != "ComfyUI-GGUF" {
		t.Errorf("nodes %+v", s.CustomNodes)
	}
	if n := s.CustomNodes[1]; n.Registry != "comfyui-impact-pack" || n.Version != "8.8.1" || n.Name != "comfyui-impact-pack" || n.Repo.Repo != "" {
		t.Errorf("registry node %+v", n)
	}
	want := []string{"pillow==10.0.0", "pyyaml==6.0.1"} // mylib @ file:// is a local path: left out
	if strings.Join(s.Python.Requirements, "|") != strings.Join(want, "|") {
		t.Errorf("requirements %q, want %q", s.Python.Requirements, want)
	}
}

func TestImportComfyLockYAMLWithModels(t *testing.T) {
	dir := testsupport.TempDir(t)
	file := filepath.Join(dir, "comfy-lock.yaml")
	sha := strings.Repeat("ab", 32)
	// comfy-cli's save_yaml: yaml.safe_dump(default_flow_style=False).
	python(t, `import yaml
data = {
  'basics': {'name': 'ws', 'updated_at': '2024-01-01T00:00:00'},
  'models': [
    {'model': 'vae', 'url': 'https://huggingface.co/Comfy-Org/Wan/resolve/main/split/wan_vae.safetensors',
     'paths': [{'path': 'models/vae/wan_vae.safetensors'}], 'hashes': [{'hash': '`+strings.ToUpper(sha)+`', 'type': 'SHA256'}], 'type': 'vae'},
    {'model': 'lora', 'url': 'https://example.com/files/lora.safetensors',
     'paths': [{'path': 'models/loras'}, {'path': 'models/loras/style'}], 'hash': None, 'type': 'lora'},
    {'model': 'dreamshaper', 'url': 'https://civitai.com/api/download/models/128713',
     'paths': [{'path': 'models/checkpoints/dreamshaper_8.safetensors'}], 'hash': None, 'type': 'checkpoint'},
  ],
  'custom_nodes': {'comfyui': '`+coreCommit+`', 'file_custom_nodes': [],
    'git_custom_nodes': {'https://github.com/city96/ComfyUI-GGUF': {'disabled': False, 'hash': '`+nodeCommit+`'}}},
}
yaml.safe_dump(data, open('`+file+`', 'w'), default_flow_style=False, allow_unicode=True)`)
	f, err := Read(file)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Import(f, ImportOptions{VersionID: "ws", SpecFile: "ws.json"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := versions.Parse("ws.json", res.Spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range s.Models {
		got = append(got, m.Source+" -> "+m.Dest()+" "+m.SHA256)
	}
	want := []string{
		"hf://Comfy-Org/Wan/split/wan_vae.safetensors -> vae/wan_vae.safetensors " + sha,
		"https://example.com/files/lora.safetensors -> loras/lora.safetensors ",
		"https://example.com/files/lora.safetensors -> loras/style/lora.safetensors ",
		"https://civitai.com/api/download/models/128713 -> checkpoints/dreamshaper_8.safetensors ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("models:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(s.CustomNodes) != 1 || s.CustomNodes[0].Commit != nodeCommit {
		t.Errorf("nodes %+v", s.CustomNodes)
	}
}

func TestImportReportsBadEntriesAgainstTheSnapshot(t *testing.T) {
	for name, tc := range map[string]struct{ doc, path, msg string }{
		"short hash": {`{"comfyui": "` + coreCommit + `", "git_custom_nodes": {"https://github.com/a/b": {"hash": "abc", "disabled": false}}}`,
			`git_custom_nodes["https://github.com/a/b"].hash`, "40-character"},
		"bad url": {`{"comfyui": "` + coreCommit + `", "git_custom_nodes": {"ftp://github.com/a/b": {"hash": "` + nodeCommit + `", "disabled": false}}}`,
			`git_custom_nodes["ftp://github.com/a/b"]`, "expected a git URL"},
		"bad core":               {`{"comfyui": "main", "git_custom_nodes": {}}`, "comfyui", "hex commit"},
		"wrong type":             {"{\"comfyui\": \"" + coreCommit + "\",\n \"git_custom_nodes\": [1, 2]}", "", "line 2"},
		"not a snapshot":         {`{"nodes": []}`, "", "expected a ComfyUI-Manager snapshot"},
		"yaml custom_nodes list": {"custom_nodes:\n  - a\n", "custom_nodes", "expected a mapping"},
	} {
		t.Run(name, func(t *testing.T) {
			f, err := Parse("snap.json", []byte(tc.doc))
			if err == nil {
				_, err = Import(f, ImportOptions{VersionID: "x", SpecFile: "x.json"})
			}
			var se *versions.SpecError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a SpecError", err)
			}
			if se.File != "snap.json" || se.Problems[0].Path != tc.path || !strings.Contains(se.Problems[0].Msg, tc.msg) {
				t.Errorf("got %v; want path %q and %q", err, tc.path, tc.msg)
			}
		})
	}
}

// TestManagerJSONIsWhatPythonWrites compares the export with Python's
// json.dump(indent=4) of the same dict, byte for byte.
func TestManagerJSONIsWhatPythonWrites(t *testing.T) {
	core := coreCommit
	s := &Snapshot{
		ComfyUI: &core,
		GitCustomNodes: map[string]GitNode{
			"https://github.com/z/zeta":  {Hash: nodeCommit},
			"https://github.com/a/äöü-😀": {Hash: offCommit, Disabled: true},
		},
		CNRCustomNodes:  map[string]string{"comfyui-impact-pack": "8.8.1"},
		FileCustomNodes: []FileNode{{Filename: "x\t\"y\".py"}},
		Pips:            map[string]string{"alpha==1.0": "", "b<c>&d": "file:///w/b.whl"},
	}
	got := s.ManagerJSON()
	var asDict map[string]any
	if err := json.Unmarshal(got, &asDict); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	dir := testsupport.TempDir(t)
	in, out := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json")
	os.WriteFile(in, got, 0o644)
	// Python re-dumps it in the same key order Manager's dict literal has.
	python(t, `import json
d = json.load(open('`+in+`'))
order = ['comfyui', 'git_custom_nodes', 'cnr_custom_nodes', 'file_custom_nodes', 'pips']
assert list(d) == order, list(d)
d['git_custom_nodes'] = {k: dict(hash=v['hash'], disabled=v['disabled']) for k, v in sorted(d['git_custom_nodes'].items())}
d['pips'] = dict(sorted(d['pips'].items()))
json.dump(d, open('`+out+`', 'w'), indent=4)`)
	want, _ := os.ReadFile(out)
	if string(got) != string(want) {
		t.Errorf("export differs from Python's json.dump:\n%s\nwant:\n%s", got, want)
	}
	empty := (&Snapshot{}).ManagerJSON()
	if string(empty) != "{\n    \"comfyui\": null,\n    \"git_custom_nodes\": {},\n    \"cnr_custom_nodes\": {},\n    \"file_custom_nodes\": [],\n    \"pips\": {}\n}" {
		t.Errorf("empty snapshot:\n%s", empty)
	}
}

// FuzzImport: any file gives a spec the validator accepts, or an error;
// never a panic.
func FuzzImport(f *testing.F) {
	f.Add([]byte(`{"comfyui": "` + coreCommit + `", "git_custom_nodes": {"https://github.com/a/b": {"hash": "` + nodeCommit + `", "disabled": false}}, "cnr_custom_nodes": {"x": "1.0.0"}, "pips": {"a==1": ""}}`))
	f.Add([]byte("custom_nodes:\n  comfyui: null\nmodels:\n- model: m\n  url: https://huggingface.co/a/b/resolve/main/c.safetensors\n  paths:\n  - path: models/vae\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.json", data)
		if err != nil {
			return
		}
		res, err := Import(file, ImportOptions{VersionID: "fuzz", SpecFile: "fuzz.json"})
		if err != nil {
			return
		}
		if _, err := versions.Parse("fuzz.json", res.Spec, nil); err != nil {
			t.Fatalf("an imported spec does not validate: %v\n%s", err, res.Spec)
		}
	})
}
