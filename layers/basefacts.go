package layers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/versions"
)

// AnnBaseFacts is the app image config label holding what the build read
// from its base (baseFacts, JSON), so a fresh runner building on the same
// base digest learns it from the image it pushed before instead of
// pulling the base's layers.
const AnnBaseFacts = "dev.comfy-image.base-facts"

// baseFacts is the recorded form of a BaseInfo: everything but local
// paths (the base's pip wheel is named by its hash; its bytes are read
// from the base only when a venv layer must be packed).
type baseFacts struct {
	Base string `json:"base"` // the base image's manifest digest
	pyenv.Target
	Torch    map[string]string       `json:"torch,omitempty"`
	Packages []pyenv.BasePackage     `json:"packages,omitempty"`
	Pip      *versions.LockedPackage `json:"pip,omitempty"`
}

func factsOf(base v1.Hash, info BaseInfo) baseFacts {
	f := baseFacts{Base: base.String(), Target: info.Target, Torch: info.Torch, Packages: info.Packages}
	if info.PipWheel != nil {
		p := info.PipWheel.LockedPackage
		f.Pip = &p
	}
	return f
}

// label is the facts as the config label's value.
func (f baseFacts) label() string {
	data, _ := json.Marshal(f)
	return string(data)
}

// info is the BaseInfo the facts describe; a pip wheel has no file yet.
func (f baseFacts) info() BaseInfo {
	info := BaseInfo{Target: f.Target, Torch: f.Torch, Packages: f.Packages}
	if f.Pip != nil {
		info.PipWheel = &pyenv.Wheel{LockedPackage: *f.Pip}
	}
	return info
}

// parseBaseFacts reads the facts label of an app image config, checked
// against the base digest the same config names: nil when absent or not
// well formed.
func parseBaseFacts(labels map[string]string) *baseFacts {
	raw, ok := labels[AnnBaseFacts]
	if !ok {
		return nil
	}
	var f baseFacts
	if json.Unmarshal([]byte(raw), &f) != nil || f.Base == "" || f.Base != labels[specs.AnnotationBaseImageDigest] ||
		f.Python == "" || f.Version == "" || f.Glibc == "" || archOf(goArchOf(f.Arch)) == "" {
		return nil
	}
	if f.Pip != nil && (f.Pip.Wheel == "" || len(f.Pip.SHA256) != 64) {
		return nil
	}
	return &f
}

func goArchOf(arch string) string {
	switch arch {
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return ""
}

// learnBaseFacts keeps the base facts an app image's config records.
func (b *builder) learnBaseFacts(cf *v1.ConfigFile) {
	if f := parseBaseFacts(cf.Config.Labels); f != nil {
		if b.baseFacts == nil {
			b.baseFacts = map[string]baseFacts{}
		}
		b.baseFacts[f.Base] = *f
	}
}

// learnCacheFrom reads the images of --cache-from: their layer keys and
// base facts are trusted like those at the push reference.
func (b *builder) learnCacheFrom(ctx context.Context) error {
	for _, ref := range b.opts.CacheFrom {
		r, err := name.ParseReference(ref)
		if err != nil {
			return fmt.Errorf("--cache-from %q: %w", ref, err)
		}
		b.learn(ctx, r)
		b.cacheFrom = append(b.cacheFrom, r.Context())
		// Its models image, where a build with separate models put it.
		if loc, err := ModelsLocation(Location{Kind: Registry, Ref: r}, ""); err == nil && loc.Kind == Registry {
			b.learn(ctx, loc.Ref)
		}
	}
	return nil
}

// readBaseInfo learns the base's facts: from an image this build trusts
// (the push reference, --cache-from) that was built on the same base
// digest, pulling no base layer; else by reading the base (cached by its
// digest).
func (b *builder) readBaseInfo(ctx context.Context) (BaseInfo, error) {
	digest, err := b.base.Digest()
	if err != nil {
		return BaseInfo{}, err
	}
	if f, ok := b.baseFacts[digest.String()]; ok {
		b.logf("base %s: facts from the image built on it before, no base layer read", digest)
		return f.info(), nil
	}
	if b.dryRun {
		return ReadBaseReadOnly(ctx, b.base, b.opts.CacheDir)
	}
	return ReadBase(ctx, b.base, b.opts.CacheDir)
}

// pipWheelFile is the base's pip wheel with its file, reading the base
// when the facts came from a label (only a venv being packed needs it).
func (b *builder) pipWheelFile(ctx context.Context, pip pyenv.Wheel) (pyenv.Wheel, error) {
	if pip.File != "" {
		return pip, nil
	}
	info, err := ReadBase(ctx, b.base, b.opts.CacheDir)
	if err != nil {
		return pyenv.Wheel{}, fmt.Errorf("read the base for its pip wheel: %w", err)
	}
	if info.PipWheel == nil || info.PipWheel.SHA256 != pip.SHA256 {
		return pyenv.Wheel{}, fmt.Errorf("the base's pip wheel is not %s (sha256 %s) as recorded in the image built on it", pip.Wheel, pip.SHA256)
	}
	return *info.PipWheel, nil
}

// baseRemoteOptions read a registry base through a destination's probed
// transport when it is in the same registry (one ping, one login).
func (b *builder) baseRemoteOptions(ctx context.Context, loc Location) []remote.Option {
	if loc.Kind == Registry {
		for repo, tr := range b.opts.Transports {
			if r, err := name.NewRepository(repo, name.WeakValidation); err == nil && r.RegistryStr() == loc.Ref.Context().RegistryStr() {
				return []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr)}
			}
		}
	}
	return []remote.Option{remote.WithContext(ctx)}
}

// AnnPythonSet is the app image config label recording the venv's Python
// set as the lock holds it (target, what it was resolved from, packages
// with their wheels' sha256), so a runner without the lock computes the
// venv's key, and finds its layer in the registry, without pip or wheels.
const AnnPythonSet = "dev.comfy-image.python-set"

// pythonSet is the recorded form of the lock's image Python set.
type pythonSet struct {
	Target   string                   `json:"target"`
	Inputs   string                   `json:"inputs"`
	Sources  string                   `json:"sources"`
	Packages []versions.LockedPackage `json:"packages"`
	// Requirements are the per-source records of the inputs (see
	// versions.LockedRequirements): a runner without the lock reads again
	// only the sources whose commit moved.
	Requirements []versions.LockedRequirements `json:"requirements,omitempty"`
}

// pythonSetLabel is the lock's set for this build's target, if it has one.
func (b *builder) pythonSetLabel() (string, bool) {
	py := b.lock.Python
	// A resolved set may be empty: its inputs digest tells it resolved.
	if py.ImageTarget != b.targetID() || py.ImageInputs == "" {
		return "", false
	}
	pkgs := py.ImagePackages
	if pkgs == nil {
		pkgs = []versions.LockedPackage{}
	}
	data, _ := json.Marshal(pythonSet{Target: py.ImageTarget, Inputs: py.ImageInputs, Sources: py.ImageSources, Packages: pkgs, Requirements: py.ImageRequirements})
	return string(data), true
}

// learnPythonSet keeps the Python set an app image's config records.
func (b *builder) learnPythonSet(cf *v1.ConfigFile) {
	raw, ok := cf.Config.Labels[AnnPythonSet]
	if !ok {
		return
	}
	var s pythonSet
	if json.Unmarshal([]byte(raw), &s) != nil || s.Target == "" || s.Inputs == "" {
		return
	}
	for _, p := range s.Packages {
		if p.Name == "" || p.Wheel == "" || len(p.SHA256) != 64 {
			return
		}
	}
	for _, r := range s.Requirements {
		if r.Owner == "" || r.OverridesDigest == "" {
			return
		}
	}
	if b.pythonSets == nil {
		b.pythonSets = map[string]pythonSet{}
	}
	if _, seen := b.pythonSets[s.Target]; !seen { // the push reference first
		b.pythonSets[s.Target] = s
	}
}

// adoptPythonSet takes the set a trusted image records for this target
// when the lock has none: lockedImageSet then checks it is current (same
// commits, or the same requirement lines) like a set of the lock's own.
// With --locked the lock alone is the truth. restore (nil when nothing
// was adopted) puts the lock's own fields back.
func (b *builder) adoptPythonSet() (restore func()) {
	py, target := &b.lock.Python, b.targetID()
	if b.opts.Locked || (py.ImageTarget == target && py.ImageInputs != "") {
		return nil
	}
	s, ok := b.pythonSets[target]
	if !ok {
		return nil
	}
	saved := *py
	py.ImageTarget, py.ImageInputs, py.ImageSources = s.Target, s.Inputs, s.Sources
	py.ImagePackages = append([]versions.LockedPackage{}, s.Packages...)
	if len(s.Requirements) > 0 {
		// Facts about commits (whichever set they came with): kept when
		// the lock's own set is put back.
		py.ImageRequirements = append([]versions.LockedRequirements(nil), s.Requirements...)
	}
	b.logf("venv: the Python set of the image built before (%s)", progress.Count(len(s.Packages), "package", "packages"))
	return func() {
		py.ImageTarget, py.ImageInputs, py.ImageSources, py.ImagePackages = saved.ImageTarget, saved.ImageInputs, saved.ImageSources, saved.ImagePackages
	}
}

// venvPip is the base's own pip wheel when the venv needs it: pip is
// installed from it unless the venv already sees pip in the base's site
// packages or gets it from the requirements. nil when the base ships none
// (then `python -m pip` does not work in the image; see README).
func (b *builder) venvPip() *pyenv.Wheel {
	if b.info.PipWheel == nil || (b.spec.Python.SystemSitePackages && b.info.HasPackage("pip")) {
		return nil
	}
	for _, p := range b.lock.Python.ImagePackages {
		if p.Name == "pip" {
			return nil
		}
	}
	return b.info.PipWheel
}

// basePackagesID is a short digest of the base's package set.
func basePackagesID(pkgs []pyenv.BasePackage) string {
	h := sha256.New()
	for _, p := range pkgs {
		fmt.Fprintf(h, "%s==%s\n", p.Name, p.Version)
	}
	return fmt.Sprintf("%x", h.Sum(nil))[:16]
}
