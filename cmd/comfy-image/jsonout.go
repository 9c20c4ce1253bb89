package main

import (
	"encoding/json"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/layers/plan"
	"github.com/comfy-image/comfy-image/versions"
)

// outputSchemaVersion is the version of the --json documents, described by
// versions/output.schema.json.
const outputSchemaVersion = 1

// report is the one JSON document `lock`, `realize`, `build` and `inspect`
// print with --json.
type report struct {
	SchemaVersion int       `json:"schema_version"`
	Command       string    `json:"command"`
	VersionID     string    `json:"version_id,omitempty"`
	SpecFile      string    `json:"spec_file,omitempty"`
	LockFile      string    `json:"lock_file,omitempty"`
	Target        string    `json:"target,omitempty"`
	Resolved      *resolved `json:"resolved,omitempty"`
	// Parts are the layers a build made, app parts then model parts.
	Parts  []partReport  `json:"parts,omitempty"`
	Images *imagesReport `json:"images,omitempty"`
	// Plan is what build --dry-run would do, part by part.
	Plan    *planReport        `json:"plan,omitempty"`
	Outputs []string           `json:"outputs,omitempty"`
	Timings map[string]float64 `json:"timings"`
	// ImageInfo is what inspect read: its fields (digest, size, base,
	// models, layers...) sit at the top level.
	*layers.ImageInfo
}

type resolved struct {
	Comfy       versions.LockedRepo      `json:"comfy"`
	CustomNodes []versions.LockedNode    `json:"custom_nodes"`
	Models      []versions.LockedModel   `json:"models"`
	Packages    []versions.LockedPackage `json:"python_packages"`
}

type partReport struct {
	Part   plan.PartKind `json:"part"`
	Name   string        `json:"name"`
	Digest string        `json:"digest"`
	Size   int64         `json:"size"`
	// State: packed (by this build), reused (from the cache) or in-registry
	// (not at hand: every output registry has it, so nothing is uploaded).
	State string `json:"state"`
}

// planReport is a build's dry run: the decisions the build takes with
// the same code (layers.PlanBuild).
type planReport struct {
	// Resolve is set when the lock cannot be used as it is: the build
	// would resolve these repositories first (parts are then unknown).
	Resolve []string `json:"resolve,omitempty"`
	// LockChanges are what the build's resolution moves against the lock
	// file (online, every ref is listed afresh).
	LockChanges []string `json:"lock_changes,omitempty"`
	// VenvAssumes are the requirement files the plan could not read (the
	// mirror lacks the new commit): the venv is planned as if unchanged.
	VenvAssumes []string         `json:"venv_assumes,omitempty"`
	Parts       []plannedPartRep `json:"parts"`
	Writes      []string         `json:"writes,omitempty"`
}

type plannedPartRep struct {
	Part   plan.PartKind `json:"part"`
	Name   string        `json:"name"`
	Key    string        `json:"key,omitempty"`
	Digest string        `json:"digest,omitempty"`
	Size   int64         `json:"size,omitempty"`
	Action plan.Action   `json:"action"`
	Fetch  []string      `json:"fetch,omitempty"`
	Upload []string      `json:"upload,omitempty"`
	Write  []string      `json:"write,omitempty"`
}

func (r *report) planFrom(p *plan.BuildPlan) {
	r.Plan = &planReport{Resolve: p.Resolve, LockChanges: p.LockChanges, VenvAssumes: p.VenvAssumes, Writes: p.Writes, Parts: []plannedPartRep{}}
	for _, pp := range p.Parts {
		r.Plan.Parts = append(r.Plan.Parts, plannedPartRep{Part: pp.Kind, Name: pp.Name, Key: pp.Key,
			Digest: pp.Digest, Size: pp.Size, Action: pp.Action, Fetch: pp.Fetch, Upload: pp.Upload, Write: pp.Write})
	}
}

type imageReport struct {
	Digest string `json:"digest"`
	Layers int    `json:"layers"`
	Size   int64  `json:"size"`
}

type imagesReport struct {
	App    imageReport  `json:"app"`
	Models *imageReport `json:"models,omitempty"`
}

func newReport(command string) *report {
	return &report{SchemaVersion: outputSchemaVersion, Command: command, Timings: map[string]float64{}}
}

func (r *report) resolvedFrom(l *versions.Lock) {
	r.VersionID = l.VersionID
	r.Resolved = &resolved{Comfy: l.Comfy, CustomNodes: l.CustomNodes, Models: l.Models, Packages: l.Python.Packages}
	if r.Resolved.CustomNodes == nil {
		r.Resolved.CustomNodes = []versions.LockedNode{}
	}
	if r.Resolved.Models == nil {
		r.Resolved.Models = []versions.LockedModel{}
	}
	if r.Resolved.Packages == nil {
		r.Resolved.Packages = []versions.LockedPackage{}
	}
}

func (r *report) timed(step string, since time.Time) {
	r.Timings[step] = time.Since(since).Seconds()
}

func (r *report) buildFrom(res *layers.Result) {
	for _, p := range res.Parts {
		d, _ := p.Layer.Digest()
		size, _ := p.Layer.Size()
		state := "reused"
		switch p.Action {
		case plan.ReuseRegistry:
			state = "in-registry"
		case plan.Pack:
			state = "packed"
		}
		r.Parts = append(r.Parts, partReport{Part: p.Kind, Name: p.Name, Digest: d.String(), Size: size, State: state})
	}
	r.Images = &imagesReport{App: describeImage(res.App)}
	if res.Models != nil {
		m := describeImage(res.Models)
		r.Images.Models = &m
	}
}

func describeImage(img v1.Image) imageReport {
	var r imageReport
	if d, err := img.Digest(); err == nil {
		r.Digest = d.String()
	}
	if m, err := img.Manifest(); err == nil {
		r.Layers = len(m.Layers)
		for _, l := range m.Layers {
			r.Size += l.Size
		}
	}
	return r
}

// print writes the document on w.
func (r *report) print(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// humanOut is where a command's human text goes: stdout, or stderr when
// stdout carries the --json document.
func humanOut(cmd *cobra.Command, asJSON bool) io.Writer {
	if asJSON {
		return cmd.ErrOrStderr()
	}
	return cmd.OutOrStdout()
}
