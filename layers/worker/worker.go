// Package worker holds what every app image runs beside ComfyUI: the entry
// script and a stdlib-only Python worker that starts ComfyUI, picks where
// the models come from, and on RunPod serverless takes the endpoint's jobs
// (worker-comfyui's job contract). A script of the standard library runs on
// any base with Python 3.9+ and needs no wheel the spec did not ask for.
package worker

import (
	_ "embed"
	"encoding/json"
	"path"
	"strings"

	"github.com/comfy-image/comfy-image/versions"
)

// File names in the image's root folder (/opt/comfy).
const (
	ScriptName   = "worker.py"
	EntryName    = "entrypoint.sh"
	ManifestName = "comfy-image.json"
)

// Script is the worker (python3 worker.py [ComfyUI args]).
//
//go:embed worker.py
var Script []byte

// EntryScript sources comfy.env and runs the worker with the venv's python.
//
//go:embed entrypoint.sh
var EntryScript []byte

// Manifest is what the worker knows of the version: its id (for the RunPod
// network volume's folder) and its models (to find them and name the
// missing ones at start).
type Manifest struct {
	VersionID string  `json:"version_id"`
	Models    []Model `json:"models"`
}

// Model is one model of the spec.
type Model struct {
	Dest   string  `json:"dest"`   // relative to the models folder
	Folder string  `json:"folder"` // ComfyUI's folder (first element of dest)
	Source string  `json:"source"`
	HF     *HFFile `json:"hf,omitempty"`
}

// HFFile locates an hf:// model in a Hugging Face cache (RunPod's cached
// models): models--<org>--<name>/snapshots/<revision>/<path>.
type HFFile struct {
	Repo     string `json:"repo"` // org/name
	Revision string `json:"revision"`
	Path     string `json:"path"`
}

// NewManifest lists the spec's models. An hf:// revision stays as the spec
// names it (the worker resolves a branch through the cache's refs/), so the
// config layer does not change when the lock moves.
func NewManifest(spec *versions.Spec) Manifest {
	m := Manifest{VersionID: spec.VersionID, Models: []Model{}}
	for _, sm := range spec.Models {
		dest := sm.Dest()
		e := Model{Dest: dest, Folder: strings.SplitN(dest, "/", 2)[0], Source: sm.Source}
		if src, err := versions.ParseSource(sm.Source); err == nil && src.Scheme == "hf" {
			e.HF = &HFFile{Repo: src.Owner + "/" + src.Repo, Revision: src.Revision, Path: src.Path}
		}
		m.Models = append(m.Models, e)
	}
	return m
}

// JSON is the manifest as written into the image.
func (m Manifest) JSON() []byte {
	data, _ := json.MarshalIndent(m, "", "  ")
	return append(data, '\n')
}

// Paths are the files' paths under root.
func Paths(root string) (script, entry, manifest string) {
	return path.Join(root, ScriptName), path.Join(root, EntryName), path.Join(root, ManifestName)
}
