// Package versions holds the version spec format (schema_version 2): loading,
// validation against schema.json plus semantic checks, defaults, and the lock.
package versions

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// SchemaVersion is the only spec format this tool reads.
const SchemaVersion = 2

// DefaultTargetSubdir is where a model goes when the spec names no folder.
const DefaultTargetSubdir = "checkpoints"

// Spec is one version: a ComfyUI core, custom nodes, models, env and options.
type Spec struct {
	SchemaVersion int               `json:"schema_version"`
	VersionID     string            `json:"version_id"`
	Comfy         Repo              `json:"comfy"`
	CustomNodes   []Node            `json:"custom_nodes,omitempty"`
	Models        []Model           `json:"models,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	Options       Options           `json:"options"`
	Python        Python            `json:"python"`

	// File is where the spec was read from; Digest is "sha256:<hex>" of its
	// canonical JSON; Warnings are problems that do not stop the work.
	File     string   `json:"-"`
	Digest   string   `json:"-"`
	Warnings []string `json:"-"`
}

// Repo is a git repository with an optional ref (branch or tag) or commit.
type Repo struct {
	Repo   string `json:"repo,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Commit string `json:"commit,omitempty"`
}

// Node is a custom node: a git repository, or a Comfy Registry node by id
// and version. Name defaults to the repo's last path element (the registry id).
type Node struct {
	Repo
	Name string `json:"name,omitempty"`
	// Registry is a Comfy Registry node id (instead of Repo); Version its
	// x.y.z ("": the latest, recorded in the lock).
	Registry string `json:"registry,omitempty"`
	Version  string `json:"version,omitempty"`
	// Submodules false leaves the node's submodules out (empty folders, as
	// git clone without --recurse-submodules); nil or true checks them out.
	Submodules *bool `json:"submodules,omitempty"`
	// LFS fetches the objects of Git LFS pointer files through the LFS
	// batch API of the node's remote (false: pointers stay pointer text).
	LFS bool `json:"lfs,omitempty"`
}

// WantsSubmodules tells whether the node's submodules are checked out.
func (n Node) WantsSubmodules() bool { return n.Submodules == nil || *n.Submodules }

// Model is one model file. TargetSubdir defaults to DefaultTargetSubdir.
type Model struct {
	Source       string `json:"source"`
	Name         string `json:"name,omitempty"`
	TargetSubdir string `json:"target_subdir,omitempty"`
	SHA256       string `json:"sha256,omitempty"`
}

// Options are defaults that command-line flags override.
type Options struct {
	Offline    bool `json:"offline,omitempty"`
	SkipModels bool `json:"skip_models,omitempty"`
}

// Python configures the version's virtualenv.
type Python struct {
	SystemSitePackages bool     `json:"system_site_packages,omitempty"`
	Requirements       []string `json:"requirements,omitempty"`
	IndexURLs          []string `json:"index_urls,omitempty"`
	// Overrides replace (name -> requirement line) or drop (name -> null)
	// the requirement of that distribution in ComfyUI's and every node's
	// requirements, matched by PEP 503 name.
	Overrides map[string]*string `json:"overrides,omitempty"`
	// Pre allows pre-releases (pip --pre).
	Pre bool `json:"pre,omitempty"`
}

// FileName is the name the model gets inside its target folder: the source's
// file name, or Name when the source path has none.
func (m Model) FileName() string {
	src, err := ParseSource(m.Source)
	if err == nil {
		if base := path.Base(src.Path); base != "." && base != "/" && base != "" {
			return base
		}
	}
	return m.Name
}

// Dest is the model's path relative to MODELS_DIR.
func (m Model) Dest() string {
	return path.Join(m.TargetSubdir, m.FileName())
}

// DefaultNodeName is the last path element of a repo URL without ".git".
func DefaultNodeName(repo string) string {
	r := strings.TrimRight(repo, "/")
	if i := strings.LastIndexAny(r, "/:"); i >= 0 {
		r = r[i+1:]
	}
	return strings.TrimSuffix(r, ".git")
}

// Load reads, validates and completes the spec in file. lookupEnv tells which
// ${VAR} references the caller's environment can satisfy (nil: os.LookupEnv).
// A *SpecError lists every problem of the file at once.
func Load(file string, lookupEnv func(string) (string, bool)) (*Spec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &SpecError{File: file, Problems: []Problem{{Msg: readProblem(err)}}}
	}
	return Parse(file, data, lookupEnv)
}

func readProblem(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "file not found"
	}
	return err.Error()
}

// Parse is Load on bytes already read; file names them in errors.
func Parse(file string, data []byte, lookupEnv func(string) (string, bool)) (*Spec, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	doc, err := decodeJSON(data)
	if err != nil {
		return nil, &SpecError{File: file, Problems: []Problem{{Msg: err.Error()}}}
	}
	if problems := validateSchema(doc); len(problems) > 0 {
		return nil, &SpecError{File: file, Problems: problems}
	}
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		// The schema check passed, so this is a bug in the schema or the types.
		return nil, &SpecError{File: file, Problems: []Problem{{Msg: "spec does not match its schema: " + err.Error()}}}
	}
	s.File = file
	s.Digest = digestOf(doc)
	s.applyDefaults()
	if problems := s.check(); len(problems) > 0 {
		return nil, &SpecError{File: file, Problems: problems}
	}
	s.Warnings = s.envWarnings(lookupEnv)
	return &s, nil
}

// decodeJSON decodes one JSON document, keeping numbers exact, and rejects
// trailing data and duplicate-free nonsense such as "{}{}".
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not valid JSON: %s", jsonErrorWithLine(data, err))
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("not valid JSON: data after the top-level value")
	}
	return doc, nil
}

func jsonErrorWithLine(data []byte, err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line := 1 + bytes.Count(data[:min(int(syn.Offset), len(data))], []byte("\n"))
		return fmt.Sprintf("line %d: %v", line, err)
	}
	return err.Error()
}

// digestOf hashes the canonical form of a decoded document: encoding/json
// sorts map keys and drops insignificant whitespace.
func digestOf(doc any) string {
	canon, _ := json.Marshal(doc)
	sum := sha256.Sum256(canon)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (s *Spec) applyDefaults() {
	for i := range s.CustomNodes {
		if s.CustomNodes[i].Name == "" {
			s.CustomNodes[i].Name = DefaultNodeName(s.CustomNodes[i].Repo.Repo)
			if s.CustomNodes[i].Registry != "" {
				s.CustomNodes[i].Name = s.CustomNodes[i].Registry
			}
		}
	}
	for i := range s.Models {
		if s.Models[i].TargetSubdir == "" {
			s.Models[i].TargetSubdir = DefaultTargetSubdir
		}
	}
}

// Locate finds the spec file of a version id: versions/<id>.json in the
// working directory, then <dir>/<id>.json for each of dirs.
func Locate(id string, dirs ...string) (string, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
		return "", fmt.Errorf("--version-id %q: expected a version id (letters, digits, '.', '_', '-'), not a path; use --spec FILE for a file", id)
	}
	candidates := []string{filepath.Join("versions", id+".json")}
	for _, d := range dirs {
		if d != "" {
			candidates = append(candidates, filepath.Join(d, id+".json"))
		}
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("--version-id %s: no spec found (looked at %s)", id, strings.Join(candidates, ", "))
}
