package versions

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/comfy-image/comfy-image/internal/fileutil"
)

// LockVersion is the format version of lock files this tool writes.
const LockVersion = 1

// Lock pins everything a rebuild needs. It never holds a secret.
type Lock struct {
	LockVersion int           `json:"lock_version"`
	VersionID   string        `json:"version_id"`
	SpecDigest  string        `json:"spec_digest"`
	Comfy       LockedRepo    `json:"comfy"`
	CustomNodes []LockedNode  `json:"custom_nodes"`
	Models      []LockedModel `json:"models"`
	Python      LockedPython  `json:"python"`
	Layers      []LockedLayer `json:"layers,omitempty"`
}

// LockedRepo is a repository resolved to a commit. Ref is what the spec
// asked for (empty: the default branch); ResolvedRef is the full ref used.
type LockedRepo struct {
	Repo        string `json:"repo"`
	Ref         string `json:"ref,omitempty"`
	ResolvedRef string `json:"resolved_ref,omitempty"`
	Commit      string `json:"commit"`
	// Submodules are the submodules checked out with it, nested ones
	// included (paths from the repository's root).
	Submodules []LockedSubmodule `json:"submodules,omitempty"`
}

// LockedSubmodule is one submodule: its path in the checkout, its URL
// (relative ones resolved; never with credentials) and the gitlink commit.
type LockedSubmodule struct {
	Path   string `json:"path"`
	URL    string `json:"url"`
	Commit string `json:"commit"`
}

// LockedNode is a custom node resolved to a commit. A Comfy Registry node
// also records its id, the version resolved, the zip's URL and sha256; its
// commit is that of the tree unpacked from the zip (the same on any machine).
type LockedNode struct {
	Name string `json:"name"`
	LockedRepo
	Registry string `json:"registry,omitempty"`
	Version  string `json:"version,omitempty"`
	URL      string `json:"url,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
}

// LockedModel is a model file resolved to its final URL, size and content.
type LockedModel struct {
	Name     string `json:"name,omitempty"`
	Source   string `json:"source"`
	Dest     string `json:"dest"`
	URL      string `json:"url,omitempty"`
	Revision string `json:"revision,omitempty"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// LockedPython is the exact set of packages installed in the venv: on disk
// (for the host's Python) and in images (for the base image's Python,
// named by ImageTarget), which may differ.
//
// Each set is the complete environment pip resolved, kept while what it was
// resolved from is unchanged: Inputs digests the requirement lines of the
// locked commits, the spec's python section and the target Python; Sources
// digests the commits those lines come from (with the same python section
// and target), so a set whose commits did not move is known current without
// reading a requirements file. A set with its Inputs digest is resolved,
// even when it is empty (a version without Python requirements); without
// it, it was never resolved.
type LockedPython struct {
	Packages      []LockedPackage `json:"packages"`
	Inputs        string          `json:"inputs,omitempty"`
	Sources       string          `json:"sources,omitempty"`
	ImageTarget   string          `json:"image_target,omitempty"`
	ImagePackages []LockedPackage `json:"image_packages,omitempty"`
	ImageInputs   string          `json:"image_inputs,omitempty"`
	ImageSources  string          `json:"image_sources,omitempty"`
	// ImageRequirements are the inputs of the image set, one record per
	// source of requirement lines (ComfyUI, each node, python.requirements):
	// a build reads again only the sources whose commit moved. A lock
	// without them (older locks) makes a build read every source.
	ImageRequirements []LockedRequirements `json:"image_requirements,omitempty"`
	// Overrides are the requirement lines python.overrides changed.
	Overrides []AppliedOverride `json:"overrides,omitempty"`
}

// LockedRequirements records the requirement lines one source (Owner:
// "ComfyUI", "node NAME" or "python.requirements") gave at Commit, loaded
// with the python.overrides digested in OverridesDigest: Lines is the
// sha256 of those lines ("" when the commit has no requirements file),
// Requires the lines without an environment marker (what the set must
// cover), Overrides what the overrides changed in them.
type LockedRequirements struct {
	Owner           string            `json:"owner"`
	Commit          string            `json:"commit,omitempty"`
	OverridesDigest string            `json:"overrides_digest"`
	Lines           string            `json:"lines,omitempty"`
	Requires        []string          `json:"requires,omitempty"`
	Overrides       []AppliedOverride `json:"overrides,omitempty"`
}

// AppliedOverride is one requirement line of Owner's File (at Line) that
// the spec's python.overrides replaced with To, or dropped (To "").
type AppliedOverride struct {
	Owner string `json:"owner"`
	File  string `json:"file"`
	Line  int    `json:"line"`
	From  string `json:"from"`
	To    string `json:"to,omitempty"`
}

// LockedPackage is one installed distribution and the wheel it came from.
type LockedPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Wheel   string `json:"wheel,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
}

// LockedLayer records the digest an image layer had, so a build with an
// empty cache can ask the registry before packing.
type LockedLayer struct {
	Part   string `json:"part"`
	Key    string `json:"key"`
	Digest string `json:"digest"`
	DiffID string `json:"diff_id"`
	Size   int64  `json:"size"`
}

// LockPath is where the lock of a version lives in a cache.
func LockPath(cacheDir, versionID string) string {
	return filepath.Join(cacheDir, "resolved", versionID+".lock.json")
}

// ErrNoLock is returned by ReadLock when the version has never been locked.
var ErrNoLock = errors.New("no lock")

// ReadLock reads a lock file.
func ReadLock(file string) (*Lock, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (run `comfy-image lock` first)", file, ErrNoLock)
	}
	if err != nil {
		return nil, err
	}
	var l Lock
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%s: not a valid lock (damaged?): %v; `comfy-image lock` writes it again (so do realize and build without --locked)", file, err)
	}
	if l.LockVersion != LockVersion {
		return nil, fmt.Errorf("%s: lock_version %d, expected %d (re-run `comfy-image lock`)", file, l.LockVersion, LockVersion)
	}
	return &l, nil
}

// WriteLock writes a lock atomically: a temporary file in the same folder,
// synced, then renamed over the old one.
func WriteLock(file string, l *Lock) error {
	l.LockVersion = LockVersion
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(file, append(data, '\n'), 0o644)
}

// CheckCurrent fails when the lock was made from another spec.
func (l *Lock) CheckCurrent(s *Spec, file string) error {
	if l.VersionID != s.VersionID {
		return fmt.Errorf("%s: lock is for version %q, spec %s is %q", file, l.VersionID, s.File, s.VersionID)
	}
	if l.SpecDigest != s.Digest {
		return fmt.Errorf("%s: spec %s changed since it was locked (lock %s, spec %s); run `comfy-image lock` without --locked", file, s.File, short(l.SpecDigest), short(s.Digest))
	}
	return nil
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
