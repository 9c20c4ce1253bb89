// Package snapshot reads ComfyUI-Manager snapshots and comfy-cli's
// comfy-lock.yaml into version specs, and writes a lock back out as a
// Manager snapshot that `cm-cli restore-snapshot` accepts.
//
// A Manager snapshot (glob/manager_core.py, get_current_snapshot) is
//
//	{"comfyui": "<commit>" | null,
//	 "git_custom_nodes": {"<url>": {"hash": "<commit>", "disabled": false}},
//	 "cnr_custom_nodes": {"<registry id>": "<version>"},
//	 "file_custom_nodes": [{"filename": "x.py", "disabled": false}],
//	 "pips": {"name==1.0": "", "name": "<url of a direct reference>"}}
//
// saved as JSON, or as YAML wrapped in {"custom_nodes": ...}. comfy-cli's
// comfy-lock.yaml carries the same YAML snapshot under custom_nodes plus a
// models list.
package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/comfy-image/comfy-image/versions"
)

// Snapshot is ComfyUI-Manager's snapshot of an installation.
type Snapshot struct {
	// ComfyUI is the core's commit; nil when Manager saved custom nodes only.
	ComfyUI         *string            `yaml:"comfyui"`
	GitCustomNodes  map[string]GitNode `yaml:"git_custom_nodes"`
	CNRCustomNodes  map[string]string  `yaml:"cnr_custom_nodes"`
	FileCustomNodes []FileNode         `yaml:"file_custom_nodes"`
	// Pips is pip freeze: "name==version" -> "", or "name" -> URL for a
	// direct reference ("name @ URL").
	Pips map[string]string `yaml:"pips"`
}

// GitNode is a custom node cloned from git, at a commit.
type GitNode struct {
	Hash     string `yaml:"hash"`
	Disabled bool   `yaml:"disabled"`
}

// FileNode is a single-file custom node (custom_nodes/<file>.py).
type FileNode struct {
	Filename string `yaml:"filename"`
	Disabled bool   `yaml:"disabled"`
}

// LockModel is one entry of comfy-lock.yaml's models list. comfy-cli's
// README documents hashes[] with a type; its writer emits a single hash.
type LockModel struct {
	Model  string      `yaml:"model"`
	URL    string      `yaml:"url"`
	Paths  []ModelPath `yaml:"paths"`
	Hash   string      `yaml:"hash"`
	Hashes []ModelHash `yaml:"hashes"`
	Type   string      `yaml:"type"`
}

// ModelPath is where comfy-cli placed a model, relative to the workspace.
type ModelPath struct {
	Path string `yaml:"path"`
}

// ModelHash is one hash of a model ("SHA256", "AutoV2", "CRC32", ...).
type ModelHash struct {
	Hash string `yaml:"hash"`
	Type string `yaml:"type"`
}

// File is what an input file holds: a snapshot and, for comfy-lock.yaml,
// models.
type File struct {
	Name string
	Snapshot
	Models []LockModel
}

// Read reads a Manager snapshot (JSON or YAML) or a comfy-lock.yaml.
func Read(file string) (*File, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, os.ErrNotExist) {
			msg = "file not found"
		}
		return nil, &versions.SpecError{File: file, Problems: []versions.Problem{{Msg: msg}}}
	}
	return Parse(file, data)
}

// Parse is Read on bytes already read; file names them in errors. JSON is
// read by the YAML decoder too (YAML 1.2 is a superset), so both forms get
// the same line-numbered errors.
func Parse(file string, data []byte) (*File, error) {
	bad := func(path, format string, args ...any) error {
		return &versions.SpecError{File: file, Problems: []versions.Problem{{Path: path, Msg: fmt.Sprintf(format, args...)}}}
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return nil, bad("", "not a ComfyUI-Manager snapshot (JSON or YAML) or comfy-lock.yaml: %v", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, bad("", "expected a mapping with comfyui, git_custom_nodes, cnr_custom_nodes, file_custom_nodes and pips (or custom_nodes: and models: in a YAML snapshot or comfy-lock.yaml)")
	}
	top := doc.Content[0]
	f := &File{Name: file}
	snap, wrapped := valueOf(top, "custom_nodes")
	if wrapped {
		// Manager's YAML form and comfy-lock.yaml: the snapshot is under custom_nodes.
		if snap.Kind != yaml.MappingNode {
			return nil, bad("custom_nodes", "line %d: expected a mapping (Manager's snapshot), got %s", snap.Line, kindName(snap))
		}
		if models, ok := valueOf(top, "models"); ok && models.Tag != "!!null" {
			if err := models.Decode(&f.Models); err != nil {
				return nil, bad("models", "%v", typeErr(err))
			}
		}
	} else {
		snap = top
		if _, ok := valueOf(top, "git_custom_nodes"); !ok {
			if _, ok := valueOf(top, "comfyui"); !ok {
				return nil, bad("", "expected a ComfyUI-Manager snapshot: no comfyui or git_custom_nodes key (nor custom_nodes: of a YAML snapshot)")
			}
		}
	}
	if err := snap.Decode(&f.Snapshot); err != nil {
		return nil, bad(prefix(wrapped), "%v", typeErr(err))
	}
	return f, nil
}

func prefix(wrapped bool) string {
	if wrapped {
		return "custom_nodes"
	}
	return ""
}

// valueOf finds key in a mapping node.
func valueOf(m *yaml.Node, key string) (*yaml.Node, bool) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1], true
		}
	}
	return nil, false
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	}
	return "something else"
}

func typeErr(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return errors.New(te.Errors[0])
	}
	return err
}
