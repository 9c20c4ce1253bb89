// Package plan is a build's plan as data: the parts of the images (core,
// nodes, venv, config, models), for each what the build does with its
// layer (reuse it from the local cache or the registry, pack it, download
// a model) and what that costs (uploads). The build and its dry run take
// the same decisions and report them in these types; Print shows a plan.
package plan

import (
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/comfy-image/comfy-image/internal/progress"
)

// PartKind is what a part of an image holds.
type PartKind string

// The kinds of parts.
const (
	Core   PartKind = "core"   // ComfyUI at the locked commit
	Node   PartKind = "node"   // one custom node
	Nodes  PartKind = "nodes"  // a group of custom nodes (short layer budget)
	Venv   PartKind = "venv"   // the virtualenv unpacked from wheels
	Config PartKind = "config" // extra_model_paths.yaml, comfy.env, the worker
	Model  PartKind = "model"  // one model file, or a group of small ones
)

// Action is what a build does for one part's layer.
type Action string

// The actions of a build plan.
const (
	ReuseCache    Action = "reuse-cache"    // the layer (or model file) is in the local cache
	ReuseRegistry Action = "reuse-registry" // every registry output holds it: neither packed nor read
	Pack          Action = "pack"           // packed from its sources
	Download      Action = "download"       // a model file fetched, then laid out as a layer
)

// ModelsMode is where a build puts the spec's models.
type ModelsMode string

// The models modes of --models.
const (
	Separate ModelsMode = "separate" // a models image beside the app image
	Bake     ModelsMode = "bake"     // in the app image, under /models
	Skip     ModelsMode = "skip"     // no models
)

// ParseModelsMode parses the value of --models ("": separate).
func ParseModelsMode(s string) (ModelsMode, error) {
	switch m := ModelsMode(s); m {
	case "":
		return Separate, nil
	case Separate, Bake, Skip:
		return m, nil
	}
	return "", fmt.Errorf("--models %q: expected separate, bake or skip", s)
}

// Part is one layer a build adds, with what it holds and what the build
// did with it.
type Part struct {
	Kind   PartKind
	Name   string
	Repo   string
	Commit string
	SHA256 string // models
	Key    string
	// Action: ReuseCache, ReuseRegistry (the layer was not at hand; every
	// registry output has it), Pack (packed by this build) or, in a dry
	// run, Download (a model not in the model store yet).
	Action Action
	// Fetch are the repositories a dry run's part to pack must fetch
	// first (their mirror in the cache lacks the commit).
	Fetch []string
	// Layer is nil in a dry run for a part still to pack or download.
	Layer       v1.Layer
	Annotations map[string]string
	History     string
}

// Label is the part as a person reads it: "node gguf"; "config" for a
// part without a name.
func (p Part) Label() string {
	if p.Name == "" {
		return string(p.Kind)
	}
	return string(p.Kind) + " " + p.Name
}

// PlannedPart is one layer of a build plan.
type PlannedPart struct {
	Kind PartKind
	Name string
	// Key is the layer's cache key ("" for a venv whose Python set is not
	// locked yet: pip chooses it).
	Key string
	// Digest and Size are known when the layer is cached, in the registry
	// or recorded by the lock ("" and 0 otherwise).
	Digest string
	Size   int64
	Action Action
	// Fetch are the repositories packing it would fetch first (clone, or
	// fetch into a mirror that lacks the commit).
	Fetch []string
	// Upload are the registry repositories the layer's blob would be
	// uploaded to (those that do not hold it yet).
	Upload []string
	// Write are the OCI layouts (that lack the blob) and tarballs the
	// layer's bytes would be written to.
	Write []string
}

// BuildPlan is what `build --dry-run` prints: the parts the build would
// make, each with its decision, and where the images would go.
type BuildPlan struct {
	VersionID, SpecFile, Base string
	Models                    ModelsMode
	// LockProblem is why the lock cannot be used as it is; the build would
	// resolve first (Resolve lists the repositories), and Parts is empty.
	LockProblem error
	Resolve     []string
	// LockChanges are what the build's resolution would move against the
	// lock file (online: every ref is listed afresh).
	LockChanges []string
	// VenvAssumes are the requirement files a dry run could not read (the
	// mirror lacks the new commit; a dry run fetches nothing): the venv
	// is planned as if their lines did not change.
	VenvAssumes []string
	BaseLayers  int
	Parts       []PlannedPart
	// Writes are the outputs that are no registry: each gets the images,
	// and the blobs it lacks (PlannedPart.Write).
	Writes []string
}

// Print writes the plan for a person.
func (p *BuildPlan) Print(w io.Writer) {
	fmt.Fprintf(w, "dry run: build %s (%s) on %s, models %s\n", p.VersionID, p.SpecFile, p.Base, p.Models)
	if p.LockProblem != nil {
		fmt.Fprintf(w, "  lock: %v; would resolve:\n", p.LockProblem)
		for _, line := range p.Resolve {
			fmt.Fprintln(w, "    "+line)
		}
		fmt.Fprintln(w, "  layers: core, one per custom node, venv, config (commits not known before the lock)")
		return
	}
	for _, line := range p.LockChanges {
		fmt.Fprintf(w, "  lock: %s\n", line)
	}
	fmt.Fprintf(w, "  base: %d layers\n", p.BaseLayers)
	for _, pp := range p.Parts {
		detail := ""
		if pp.Digest != "" {
			detail = fmt.Sprintf(" %s (%s)", pp.Digest, progress.Size(pp.Size))
		}
		fmt.Fprintf(w, "  %-14s %-6s %s%s\n", pp.Action, pp.Kind, pp.Name, detail)
		for _, repo := range pp.Fetch {
			fmt.Fprintf(w, "  %-14s %-6s %s from %s\n", "fetch", pp.Kind, pp.Name, repo)
		}
		if pp.Kind == Venv {
			for _, a := range p.VenvAssumes {
				fmt.Fprintf(w, "  %-14s %-6s as if the requirement lines of %s did not change; if they did, the venv is resolved and packed\n", "assume", pp.Kind, a)
			}
		}
		for _, repo := range pp.Upload {
			fmt.Fprintf(w, "  %-14s %-6s %s to %s\n", "upload", pp.Kind, pp.Name, repo)
		}
		for _, out := range pp.Write {
			fmt.Fprintf(w, "  %-14s %-6s %s to %s\n", "write", pp.Kind, pp.Name, out)
		}
	}
	for _, out := range p.Writes {
		fmt.Fprintf(w, "  write   %s\n", out)
	}
}
