package realize

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/gofrs/flock"

	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/internal/parallel"
	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/internal/reqfile"
	"github.com/comfy-image/comfy-image/realize/checkout"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/realize/models"
	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

// RealizeOptions are the settings of an on-disk realize.
type RealizeOptions struct {
	Options
	// Target is COMFY_HOME ("" : DefaultTarget); ModelsDir is MODELS_DIR
	// ("": <target>/models).
	Target, ModelsDir string
	// WheelsDir adds --no-index --find-links DIR to every pip call.
	WheelsDir string
	// SkipModels leaves models out; Force overwrites files the user changed;
	// Locked requires a current lock and installs exactly what it names.
	SkipModels, Force, Locked bool
	// Python is the host interpreter for the venv ("": python3).
	Python string
	// LookupEnv resolves ${VAR} references of the spec's env (nil: os).
	LookupEnv func(string) (string, bool)
	// Out receives the plan and the summary.
	Out io.Writer
	// Reporter shows download progress (nil: plain lines to Log).
	Reporter progress.Reporter
	// ModelJobs bounds parallel downloads (0: 3); Backoff is the first
	// retry delay of downloads (0: 1s).
	ModelJobs int
	Backoff   time.Duration
}

// DefaultTarget is /runpod-volume/comfy-<id> when /runpod-volume exists,
// else $HOME/comfy-<id>, else ./comfy-<id>.
func DefaultTarget(id string) string {
	if fi, err := os.Stat("/runpod-volume"); err == nil && fi.IsDir() {
		return filepath.Join("/runpod-volume", "comfy-"+id)
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, "comfy-"+id)
	}
	return "comfy-" + id
}

// targetState is what a target remembers of its last realize, so a rerun
// can tell in a few stats that nothing needs doing.
type targetState struct {
	VersionID string                        `json:"version_id"`
	Parts     map[string]*checkout.Checkout `json:"parts"`
	Venv      string                        `json:"venv,omitempty"`
	Models    map[string]placedModel        `json:"models"`
	// CoreModelFiles is "<core commit> <models dir>" once the core's own
	// files of ComfyUI/models were placed in the models folder.
	CoreModelFiles string `json:"core_model_files,omitempty"`
}

type placedModel struct {
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
}

// realizer carries one realize run.
type realizer struct {
	spec      *versions.Spec
	opts      RealizeOptions
	target    string
	modelsDir string
	lock      *versions.Lock
	lockFile  string
	planOld   planOld // the lock file's lock, in an online dry run
	state     *targetState
	stateFile string
	cache     *gitcache.Cache
	summary   []string
	// root is the target: nothing below it is followed when a symlink.
	root *os.Root
}

// Realize lays a version out in its target: checkouts, relative node links,
// the venv, models and extra_model_paths.yaml. It resumes what a killed run
// left and does nothing when everything is in place.
func Realize(ctx context.Context, spec *versions.Spec, opts RealizeOptions) error {
	start := time.Now()
	r, err := newRealizer(spec, opts)
	if err != nil {
		return err
	}
	if err := r.checkTarget(); err != nil {
		return err
	}
	if opts.DryRun {
		return r.plan(ctx)
	}
	if err := os.MkdirAll(filepath.Join(r.target, ".comfy-image"), 0o755); err != nil {
		return err
	}
	if r.root, err = os.OpenRoot(r.target); err != nil {
		return err
	}
	defer r.root.Close()
	tl := flock.New(filepath.Join(r.target, ".comfy-image", "lock"))
	if _, err := tl.TryLockContext(ctx, 100*time.Millisecond); err != nil {
		return fmt.Errorf("lock target %s: %w", r.target, err)
	}
	defer tl.Unlock()
	r.loadState()
	if err := r.ensureLock(ctx); err != nil {
		return err
	}
	// The lock is saved after every step, so what a killed run resolved
	// (the pip set, model digests) is not resolved again.
	steps := []func(context.Context) error{r.checkouts, r.links, r.modelsLayout, r.venv, r.models, r.config}
	for _, step := range steps {
		before, _ := json.Marshal(r.lock)
		err := step(ctx)
		if serr := r.saveLockIfChanged(before); err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
	}
	if err := RecordUse(opts.CacheDir, r.lock); err != nil {
		return fmt.Errorf("record what the realize used in the cache: %w", err)
	}
	fmt.Fprintf(r.out(), "realized %s in %s (%.1fs)\n", spec.VersionID, r.target, time.Since(start).Seconds())
	for _, line := range r.summary {
		fmt.Fprintln(r.out(), "  "+line)
	}
	return nil
}

// TargetError is a --target (or a path in it) that realize refuses before
// doing any work: bad input, exit code 2.
type TargetError struct {
	Path, Reason string
}

func (e *TargetError) Error() string { return e.Path + ": " + e.Reason }

// BadInput marks the error as bad input for the command's exit code.
func (e *TargetError) BadInput() bool { return true }

// checkTarget refuses a target that is a file, and a folder that holds
// files but was never realized (realize would scatter its files among the
// user's). With --force such a folder is used, but not when realize would
// overwrite one of the user's files there: those are named.
func (r *realizer) checkTarget() error {
	fi, err := os.Stat(r.target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &TargetError{Path: r.target, Reason: "--target is not a folder"}
	}
	if _, err := os.Lstat(filepath.Join(r.target, ".comfy-image")); err == nil {
		return nil // realized before (or started): ours
	}
	entries, err := os.ReadDir(r.target)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if !r.opts.Force {
		names := make([]string, 0, 3)
		for _, e := range entries[:min(3, len(entries))] {
			names = append(names, e.Name())
		}
		return &TargetError{Path: r.target, Reason: fmt.Sprintf(
			"--target is not empty (%s...) and was never realized; give a new or empty folder, or --force to realize beside these files", strings.Join(names, ", "))}
	}
	var clash []string
	for _, name := range []string{"extra_model_paths.yaml", "comfy.env", "run.sh", ".venv"} {
		if _, err := os.Lstat(filepath.Join(r.target, name)); err == nil {
			clash = append(clash, name)
		}
	}
	if !r.opts.SkipModels {
		for _, m := range r.spec.Models {
			dest := filepath.Join(r.modelsDir, filepath.FromSlash(m.Dest()))
			if _, err := os.Lstat(dest); err == nil {
				clash = append(clash, dest)
			}
		}
	}
	if len(clash) > 0 {
		return &TargetError{Path: r.target, Reason: "--force: realize would overwrite these files of yours, move them away: " + strings.Join(clash, ", ")}
	}
	return nil
}

func newRealizer(spec *versions.Spec, opts RealizeOptions) (*realizer, error) {
	if opts.Target == "" {
		opts.Target = DefaultTarget(spec.VersionID)
	}
	target, err := filepath.Abs(opts.Target)
	if err != nil {
		return nil, err
	}
	modelsDir := filepath.Join(target, "models")
	if opts.ModelsDir != "" {
		if modelsDir, err = filepath.Abs(opts.ModelsDir); err != nil {
			return nil, err
		}
	}
	if opts.Python == "" {
		opts.Python = "python3"
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	cache := checkout.NewGitCache(opts.CacheDir, opts.Offline, opts.log())
	return &realizer{
		spec: spec, opts: opts, target: target, modelsDir: modelsDir,
		lockFile:  opts.LockPath(spec.VersionID),
		stateFile: filepath.Join(target, ".comfy-image", "state.json"),
		cache:     cache,
	}, nil
}

func (r *realizer) out() io.Writer {
	if r.opts.Out == nil {
		return io.Discard
	}
	return r.opts.Out
}

func (r *realizer) logf(format string, args ...any) {
	fmt.Fprintf(r.opts.log(), format+"\n", args...)
}

// ensureLock follows the lock rule (resolve.InFile): online every ref is
// resolved afresh; with --locked or --offline the recorded lock is the truth.
func (r *realizer) ensureLock(ctx context.Context) (err error) {
	r.lock, _, err = resolve.InFile(ctx, r.spec, r.lockFile, append(r.opts.ResolveOptions(),
		resolve.WithLocked(r.opts.Locked), resolve.WithoutModels(r.opts.SkipModels), resolve.WithLookupEnv(r.opts.LookupEnv))...)
	return err
}

// saveLockIfChanged writes what a step pinned; with --locked the lock is
// the truth and is never written.
func (r *realizer) saveLockIfChanged(before []byte) error {
	after, _ := json.Marshal(r.lock)
	if string(after) == string(before) || r.opts.Locked {
		return nil
	}
	return versions.WriteLock(r.lockFile, r.lock)
}

func (r *realizer) loadState() {
	r.state = &targetState{}
	if data, err := os.ReadFile(r.stateFile); err == nil {
		_ = json.Unmarshal(data, r.state)
	}
	if r.state.Parts == nil {
		r.state.Parts = map[string]*checkout.Checkout{}
	}
	if r.state.Models == nil {
		r.state.Models = map[string]placedModel{}
	}
	r.state.VersionID = r.spec.VersionID
}

func (r *realizer) saveState() error {
	data, err := json.Marshal(r.state)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(r.stateFile, data, 0o644)
}

// part is one checkout: the core or a node.
type part struct {
	key  string // "ComfyUI" or "custom_nodes/<name>"
	repo versions.LockedRepo
}

func (r *realizer) parts() []part {
	ps := []part{{"ComfyUI", r.lock.Comfy}}
	for _, n := range r.lock.CustomNodes {
		ps = append(ps, part{"custom_nodes/" + n.Name, n.LockedRepo})
	}
	return ps
}

func (r *realizer) checkouts(ctx context.Context) error {
	for i, p := range r.parts() {
		repoURL := r.repoURL(i)
		prev := r.state.Parts[p.key]
		tree := checkout.TreeOptions(ctx, r.cache, repoURL, r.specNode(i))
		if r.partUnchanged(ctx, i, p) {
			r.summary = append(r.summary, fmt.Sprintf("%s %s  unchanged", summaryName(p.key), p.repo.Commit[:12]))
			continue
		}
		repo, err := checkout.OpenMirror(ctx, r.cache, repoURL, p.repo.Commit)
		if err != nil {
			return fmt.Errorf("%s: %w", p.key, err)
		}
		if err := realDir(r.root, p.key); err != nil {
			return err
		}
		// Pending work is recorded once the checks passed: a refused
		// checkout must stay refused on the next run.
		recordPending := func() error {
			pending := &checkout.Checkout{Commit: p.repo.Commit, Files: map[string]checkout.TreeFile{}}
			if prev != nil {
				pending.Commit, pending.Files = prev.Commit, prev.Files
			}
			pending.Pending = p.repo.Commit
			r.state.Parts[p.key] = pending
			return r.saveState()
		}
		r.logf("checkout %s at %s", p.key, p.repo.Commit[:12])
		done, err := checkout.CheckoutTree(repo, p.repo.Commit, filepath.Join(r.target, p.key), prev, r.opts.Force, append(append(tree, checkoutOptions(p.key)...), checkout.BeforeWrite(recordPending))...)
		if err != nil {
			return fmt.Errorf("%s: %w", p.key, err)
		}
		r.state.Parts[p.key] = done
		if err := r.saveState(); err != nil {
			return err
		}
		r.summary = append(r.summary, fmt.Sprintf("%s %s  checked out (%s)", summaryName(p.key), p.repo.Commit[:12], progress.Count(len(done.Files), "file", "files")))
	}
	return nil
}

// partUnchanged is the one decision whether part i is in place at its
// locked commit, untouched: a realize keeps it, its dry run says so.
func (r *realizer) partUnchanged(ctx context.Context, i int, p part) bool {
	prev := r.state.Parts[p.key]
	if p.repo.Commit == "" || !prev.Done(p.repo.Commit, checkout.TreeOptions(ctx, r.cache, r.repoURL(i), r.specNode(i))...) || coreModelsTracked(p.key, prev) {
		return false
	}
	ok, err := checkout.Unchanged(filepath.Join(r.target, p.key), prev)
	return err == nil && ok
}

// specNode is the spec's node of part i (the zero Node for the core).
func (r *realizer) specNode(i int) versions.Node {
	if i == 0 {
		return versions.Node{}
	}
	return r.spec.CustomNodes[i-1]
}

// repoURL is the spec's URL of part i (the lock keeps a redacted copy).
func (r *realizer) repoURL(i int) string {
	if i == 0 {
		return r.spec.Comfy.Repo
	}
	return checkout.NodeRepo(r.spec.CustomNodes[i-1], r.lock.CustomNodes[i-1])
}

// links makes ComfyUI/custom_nodes/<name> -> ../../custom_nodes/<name>
// (relative, so the target works at any mount point) and removes links of
// nodes the spec no longer has. Everything goes through the target's root
// and ComfyUI/custom_nodes must be a real folder: a core whose
// custom_nodes is a link would have the links made wherever it points.
func (r *realizer) links(context.Context) error {
	const dir = "ComfyUI/custom_nodes"
	if fi, err := r.root.Lstat(dir); err == nil && !fi.IsDir() {
		return &TargetError{Path: filepath.Join(r.target, dir), Reason: fmt.Sprintf(
			"the core (commit %s) has custom_nodes as a %s, not a folder; refusing to put node links through it", r.lock.Comfy.Commit, checkout.KindOf(fi))}
	}
	if err := realDir(r.root, dir); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range r.lock.CustomNodes {
		want[n.Name] = true
		link := dir + "/" + n.Name
		dest := filepath.Join("..", "..", "custom_nodes", n.Name)
		if cur, err := r.root.Readlink(link); err == nil && cur == dest {
			continue
		}
		if fi, err := r.root.Lstat(link); err == nil {
			// --force replaces a wrong link, never a user's file or folder.
			if fi.Mode()&os.ModeSymlink == 0 || !r.opts.Force {
				return fmt.Errorf("%s exists and is not a link to %s; move it away (or use --force for a link)", filepath.Join(r.target, link), dest)
			}
			if err := r.root.Remove(link); err != nil {
				return err
			}
		}
		if err := r.root.Symlink(dest, link); err != nil {
			return err
		}
	}
	f, err := r.root.Open(dir)
	if err != nil {
		return err
	}
	entries, _ := f.ReadDir(-1)
	f.Close()
	for _, e := range entries {
		link := dir + "/" + e.Name()
		cur, err := r.root.Readlink(link)
		if err == nil && !want[e.Name()] && cur == filepath.Join("..", "..", "custom_nodes", e.Name()) {
			r.root.Remove(link)
		}
	}
	return nil
}

// realDir makes the folder rel below root, each part a real folder: a
// symlink or a file on the way is refused, never followed.
func realDir(root *os.Root, rel string) error {
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := root.Lstat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := root.Mkdir(p, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("%s is a %s, not a folder; refusing to write through it (move it away)",
				filepath.Join(root.Name(), p), checkout.KindOf(fi))
		}
	}
	return nil
}

// torchConstraints pins the torch family the version chose: the spec's
// python.requirements lines for those packages, else what the system site
// packages provide, so a node cannot replace them.
func (r *realizer) torchConstraints(ctx context.Context, v pyenv.Venv) ([]string, error) {
	var installed map[string]string
	if r.spec.Python.SystemSitePackages {
		var err error
		if installed, err = v.Installed(ctx, pyenv.TorchFamily); err != nil {
			return nil, err
		}
	}
	return pyenv.TorchConstraints(r.spec.Python.Requirements, installed), nil
}

func (r *realizer) pipOptions() pyenv.Options {
	return pyenv.Options{
		WheelsDir: r.opts.WheelsDir,
		Offline:   r.opts.Offline,
		IndexURLs: r.spec.Python.IndexURLs,
		Pre:       r.spec.Python.Pre,
		CacheDir:  filepath.Join(r.opts.CacheDir, "pip"),
		Log:       r.opts.log(),
	}
}

// venvKey digests everything the venv's content depends on.
func (r *realizer) venvKey(reqs []pyenv.Requirements, pkgs []versions.LockedPackage) string {
	h := sha256.New()
	fmt.Fprintf(h, "python=%s\nsystem=%v\nwheels=%s\noffline=%v\nindex=%q\npre=%v\ninputs=%s\n",
		r.opts.Python, r.spec.Python.SystemSitePackages, r.opts.WheelsDir, r.opts.Offline, r.spec.Python.IndexURLs, r.spec.Python.Pre, r.lock.Python.Inputs)
	for _, q := range reqs {
		fmt.Fprintf(h, "%s\n%q\n", q.Owner, q.Lines)
	}
	pk, _ := json.Marshal(pkgs)
	h.Write(pk)
	return hex.EncodeToString(h.Sum(nil))
}

// lockedSet is the lock's Python set when it was resolved from the same
// inputs as now (current false otherwise); with --locked a set that is
// missing, was resolved from other inputs or does not cover every
// requirement is an error naming why. A current set may be empty: a
// version without Python requirements resolved to nothing.
func (r *realizer) lockedSet(ctx context.Context, reqs []pyenv.Requirements) (pkgs []versions.LockedPackage, current bool, err error) {
	py := &r.lock.Python
	target, err := resolve.HostTarget(ctx, r.opts.Python)
	if err != nil {
		return nil, false, err
	}
	// The recorded inputs digest, not the packages, tells a resolved set.
	resolved := py.Inputs != ""
	sources := resolve.SourcesDigest(r.lock, r.spec, target)
	current = resolved && py.Sources == sources
	if !current && resolved {
		if current = resolve.InputsMatch(reqs, r.spec, target, py.Inputs); current {
			py.Sources = sources // same lines from moved commits
		}
	}
	if r.opts.Locked {
		switch {
		case !resolved && len(reqs) > 0:
			return nil, false, fmt.Errorf("--locked: %s holds no Python set; run `comfy-image realize` without --locked once", r.lockFile)
		case resolved && !current:
			return nil, false, fmt.Errorf("--locked: the Python set in %s was resolved from other inputs (requirements of the locked commits, the spec's python section, or python %s); run without --locked to resolve it again", r.lockFile, target)
		}
		if err := resolve.CheckCoverage(py.Packages, reqs, r.spec.Python.SystemSitePackages); err != nil {
			return nil, false, fmt.Errorf("--locked: %s: %w", r.lockFile, err)
		}
	}
	if !current {
		return nil, false, nil
	}
	return py.Packages, true, nil
}

// venv makes .venv hold exactly the locked set, or, when there is none for
// the current inputs, what one pip resolver run installs into a fresh venv
// (so the recorded set is the complete environment, never only what pip
// added last).
func (r *realizer) venv(ctx context.Context) error {
	v := pyenv.Venv{Dir: filepath.Join(r.target, ".venv")}
	reqs, overridden, err := r.requirementSources()
	if err != nil {
		return err
	}
	if pk := r.lock.Python.Packages; r.venvUnchanged(reqs) {
		// A finished venv made from the same inputs and the same locked
		// set (checked against those inputs then) is done.
		r.summary = append(r.summary, fmt.Sprintf("%s %s  unchanged", summaryName(".venv"), progress.Count(len(pk), "package", "packages")))
		return nil
	}
	locked, current, err := r.lockedSet(ctx, reqs)
	if err != nil {
		return err
	}
	if err := pyenv.CheckWheelsDir(r.opts.WheelsDir, locked); err != nil {
		return err
	}
	r.state.Venv = ""
	if err := r.saveState(); err != nil {
		return err
	}
	// Start from an empty venv: packages of an earlier set must not stay.
	if err := os.RemoveAll(v.Dir); err != nil {
		return fmt.Errorf("venv: %w", err)
	}
	r.logf("venv: %s -m venv %s", r.opts.Python, v.Dir)
	v, err = pyenv.Create(ctx, r.opts.Python, v.Dir, r.spec.Python.SystemSitePackages)
	if err != nil {
		return err
	}
	switch {
	case current && len(locked) == 0:
		r.logf("venv: the locked Python set is empty: nothing to install")
	case current:
		r.logf("venv: installing the %d locked packages", len(locked))
		if err := v.InstallLocked(ctx, locked, r.pipOptions()); err != nil {
			return err
		}
	default:
		constraints, err := r.torchConstraints(ctx, v)
		if err != nil {
			return err
		}
		owners := make([]string, len(reqs))
		for i, q := range reqs {
			owners[i] = q.Owner
		}
		r.logf("venv: pip install (one resolver run) for %s", strings.Join(owners, ", "))
		pkgs, err := v.Install(ctx, reqs, constraints, r.pipOptions())
		if err != nil {
			return err
		}
		target, err := resolve.HostTarget(ctx, r.opts.Python)
		if err != nil {
			return err
		}
		inputs, err := resolve.InputsDigest(reqs, r.spec, target)
		if err != nil {
			return err
		}
		r.lock.Python.Packages, r.lock.Python.Inputs, r.lock.Python.Sources = pkgs, inputs, resolve.SourcesDigest(r.lock, r.spec, target)
		r.lock.Python.Overrides = overridden
		locked = pkgs
	}
	if err := v.MakeRelocatable(); err != nil {
		return fmt.Errorf("venv: %w", err)
	}
	r.state.Venv = r.venvKey(reqs, locked)
	if err := r.saveState(); err != nil {
		return err
	}
	r.summary = append(r.summary, fmt.Sprintf("%s %s  installed", summaryName(".venv"), progress.Count(len(locked), "package", "packages")))
	if nodes := r.nodesWithInstallPy(); len(nodes) > 0 {
		r.summary = append(r.summary, "not run (install.py is never run by default): "+strings.Join(nodes, ", "))
	}
	return nil
}

// venvUnchanged is the one decision whether the venv is done: made from
// the same inputs (reqs) and the same locked set, checked against them then.
func (r *realizer) venvUnchanged(reqs []pyenv.Requirements) bool {
	v := pyenv.Venv{Dir: filepath.Join(r.target, ".venv")}
	pk := r.lock.Python.Packages
	// A resolved set (its inputs digest recorded) may be empty.
	return r.lock.Python.Inputs != "" && v.Exists() && r.state.Venv != "" && r.state.Venv == r.venvKey(reqs, pk)
}

func (r *realizer) nodesWithInstallPy() []string {
	var names []string
	for _, n := range r.lock.CustomNodes {
		if _, err := os.Stat(filepath.Join(r.target, "custom_nodes", n.Name, "install.py")); err == nil {
			names = append(names, n.Name)
		}
	}
	return names
}

func (r *realizer) fetcher() *models.Fetcher {
	return models.ForSpec(r.spec, models.Setup{CacheDir: r.opts.CacheDir, Offline: r.opts.Offline, Log: r.opts.log(), LookupEnv: r.opts.LookupEnv, Progress: r.opts.Reporter, Backoff: r.opts.Backoff})
}

func (r *realizer) lockedModel(m versions.Model) (versions.LockedModel, bool) {
	return models.LockedFor(r.lock, m)
}

func (r *realizer) envFile() []byte { return EnvFile(r.spec, r.opts.LookupEnv) }

func (r *realizer) models(ctx context.Context) error {
	if r.opts.SkipModels {
		r.summary = append(r.summary, "models skipped")
		return nil
	}
	f := r.fetcher()
	results := make([]versions.LockedModel, len(r.spec.Models))
	errs := make([]error, len(r.spec.Models))
	placed := make([]*placedModel, len(r.spec.Models))
	// Each, not Do: every model that cannot be fetched is named in one run,
	// and a failed one stops no other download.
	_ = parallel.Each(ctx, len(r.spec.Models), parallel.Limit(r.opts.ModelJobs, parallel.Downloads), func(ctx context.Context, i int) error {
		results[i], placed[i], errs[i] = r.model(ctx, f, r.spec.Models[i])
		return nil
	})
	f.Progress.Wait()
	var total int64
	downloaded := 0
	for i, m := range r.spec.Models {
		if errs[i] != nil {
			continue
		}
		total += results[i].Size
		if placed[i] != nil {
			r.state.Models[m.Dest()] = *placed[i]
			downloaded++
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.saveState()
		models.MergeLocked(r.spec, r.lock, results, errs)
		return err
	}
	models.MergeLocked(r.spec, r.lock, results, errs)
	if err := r.saveState(); err != nil {
		return err
	}
	r.summary = append(r.summary, fmt.Sprintf("%s %s, %s (%d placed now)", summaryName("models"), progress.Count(len(r.spec.Models), "file", "files"), humanSize(total), downloaded))
	return nil
}

// model fetches one model into the store and places it; placed is nil when
// it was already in place.
func (r *realizer) model(ctx context.Context, f *models.Fetcher, m versions.Model) (versions.LockedModel, *placedModel, error) {
	dest := filepath.Join(r.modelsDir, filepath.FromSlash(m.Dest()))
	// A file:// model placed before is still checked against its file (a
	// stamp, or a read if it moved): an edited file is refused rather than
	// the target silently keeping the old bytes.
	_, _, local := models.LocalModel(f, m, r.lock)
	if lm, ok := r.modelInPlace(m); ok && !local {
		return lm, nil, nil
	}
	out, err := models.FetchLocked(ctx, f, m, r.lock)
	if err != nil {
		return versions.LockedModel{}, nil, err
	}
	if lm, ok := r.modelInPlace(m); ok && local {
		return lm, nil, nil
	}
	force := r.opts.Force
	if st, ok := r.state.Models[m.Dest()]; ok && st.SHA256 != out.SHA256 {
		// Our own placement of an older pin (the branch it came from has
		// moved), untouched since: replace it.
		if fi, err := os.Stat(dest); err == nil && fi.Size() == st.Size && fi.ModTime().UnixNano() == st.MtimeNs {
			force = true
		}
	}
	if _, err := f.Store.Place(out.SHA256, dest, force); err != nil {
		return versions.LockedModel{}, nil, fmt.Errorf("models: %w", err)
	}
	fi, err := os.Stat(dest)
	if err != nil {
		return versions.LockedModel{}, nil, err
	}
	return out, &placedModel{SHA256: out.SHA256, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}, nil
}

// modelInPlace is the one decision whether model m is placed already: its
// locked file, as this target placed it, untouched since.
func (r *realizer) modelInPlace(m versions.Model) (versions.LockedModel, bool) {
	lm, haveLock := r.lockedModel(m)
	if !haveLock || (m.SHA256 != "" && m.SHA256 != lm.SHA256) {
		return lm, false
	}
	st, ok := r.state.Models[m.Dest()]
	if !ok || st.SHA256 != lm.SHA256 {
		return lm, false
	}
	fi, err := os.Stat(filepath.Join(r.modelsDir, filepath.FromSlash(m.Dest())))
	return lm, err == nil && fi.Size() == st.Size && fi.ModTime().UnixNano() == st.MtimeNs
}

// config writes extra_model_paths.yaml, the env file and run.sh.
// yamlBase is the yaml's base_path: relative when MODELS_DIR is inside the
// target, so the target works at any mount point; absolute otherwise.
func (r *realizer) yamlBase() string {
	if rel, err := filepath.Rel(r.target, r.modelsDir); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return r.modelsDir
}

func (r *realizer) config(context.Context) error {
	files := map[string][]byte{
		"extra_model_paths.yaml": ExtraModelPaths(r.spec, r.yamlBase()),
		"comfy.env":              r.envFile(),
		"run.sh":                 runScript(r.spec.VersionID),
	}
	for name, data := range files {
		file := filepath.Join(r.target, name)
		if cur, err := os.ReadFile(file); err == nil && string(cur) == string(data) {
			continue
		}
		mode := os.FileMode(0o644)
		if name == "run.sh" {
			mode = 0o755
		}
		if err := fileutil.WriteAtomic(file, data, mode); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(r.modelsDir, 0o755); err != nil {
		return err
	}
	return nil
}

func runScript(id string) []byte {
	return []byte(`#!/bin/sh
# Starts ComfyUI of version ` + id + ` from this folder, wherever it is mounted.
here=$(cd "$(dirname "$0")" && pwd -P)
cd "$here" || exit 1
[ -f comfy.env ] && . ./comfy.env
exec "$here/.venv/bin/python" "$here/ComfyUI/main.py" --extra-model-paths-config "$here/extra_model_paths.yaml" "$@"
`)
}

// plan prints what a realize would do, changing nothing.
func (r *realizer) plan(ctx context.Context) error {
	w := r.out()
	fmt.Fprintf(w, "dry run: realize %s (%s)\n", r.spec.VersionID, r.spec.File)
	fmt.Fprintf(w, "  target      %s\n  models dir  %s\n", r.target, r.modelsDir)
	l, changes, err := r.planLock(ctx)
	if err != nil {
		if r.opts.Locked {
			return fmt.Errorf("--locked: %w", err)
		}
		fmt.Fprintf(w, "  lock        %s would be (re)written: %v\n", r.lockFile, err)
		for _, line := range resolve.Plan(r.spec, r.opts.ResolveOptions()...) {
			fmt.Fprintln(w, "    "+line)
		}
		l = &versions.Lock{Comfy: versions.LockedRepo{Repo: r.spec.Comfy.Repo}}
		for _, n := range r.spec.CustomNodes {
			l.CustomNodes = append(l.CustomNodes, versions.LockedNode{Name: n.Name, LockedRepo: versions.LockedRepo{Repo: n.Repo.Repo}})
		}
	} else if r.opts.Locked || r.opts.Offline {
		fmt.Fprintf(w, "  lock        %s (covers the spec; used as it is)\n", r.lockFile)
	} else {
		fmt.Fprintf(w, "  lock        %s: each ref listed again (one request per repository); %s\n", r.lockFile, changesText(changes))
		for _, line := range changes.Lines {
			fmt.Fprintf(w, "  lock:       %s\n", line)
		}
	}
	r.lock = l
	r.loadStateReadOnly()
	for i, p := range r.parts() {
		commit := p.repo.Commit
		if commit == "" {
			commit = "(commit from the lock above)"
		}
		what, fetch := "check out", ""
		if r.partUnchanged(ctx, i, p) {
			what = "unchanged"
		} else if fetch = r.planFetch(i, p); fetch != "" {
			fetch = " (" + fetch + " first)"
		}
		fmt.Fprintf(w, "  %-10s  %s at %s into %s%s\n", what, p.key, commit, filepath.Join(r.target, p.key), fetch)
	}
	for _, n := range r.lock.CustomNodes {
		fmt.Fprintf(w, "  link        ComfyUI/custom_nodes/%s -> ../../custom_nodes/%s\n", n.Name, n.Name)
	}
	r.planModelsLayout(w)
	r.planVenv(ctx, w)
	r.planModels(ctx, w)
	fmt.Fprintf(w, "  write       %s:\n", filepath.Join(r.target, "extra_model_paths.yaml"))
	for _, line := range strings.Split(strings.TrimRight(string(ExtraModelPaths(r.spec, r.yamlBase())), "\n"), "\n") {
		fmt.Fprintln(w, "    | "+line)
	}
	fmt.Fprintf(w, "  write       %s, %s\n", filepath.Join(r.target, "comfy.env"), filepath.Join(r.target, "run.sh"))
	return nil
}

// planLock is the lock a realize would use. Locked or offline, the lock
// file as it is. Online, the resolution a realize makes, read-only: every
// ref listed afresh (one listing per repository, in parallel; nothing
// fetched or written), so the plan names the commits the realize then
// checks out.
func (r *realizer) planLock(ctx context.Context) (*versions.Lock, resolve.Changes, error) {
	if r.opts.Locked || r.opts.Offline {
		l, err := resolve.ReadCovering(r.spec, r.lockFile, r.opts.SkipModels)
		return l, resolve.Changes{}, err
	}
	old, _ := versions.ReadLock(r.lockFile) // a damaged lock is resolved again, as realize does
	r.planOld = planOld{old}
	return resolve.Resolve(ctx, r.spec, old, append(r.opts.ResolveOptions(), resolve.WithReadOnly(true),
		resolve.WithLockName(r.lockFile), resolve.WithoutModels(r.opts.SkipModels), resolve.WithLookupEnv(r.opts.LookupEnv))...)
}

// planFetch is what a checkout of p needs from its remote first: "clone
// REPO" without a mirror, "fetch REPO" when the mirror lacks the commit,
// "" when it has it (registry nodes: "").
func (r *realizer) planFetch(i int, p part) string {
	repo := r.repoURL(i)
	if p.repo.Commit == "" || strings.HasPrefix(repo, "comfy-registry://") {
		return ""
	}
	_, ok, err := r.cache.Peek(repo, "", p.repo.Commit)
	switch {
	case !ok:
		return "clone " + repourl.Redact(repo)
	case err != nil:
		return "fetch " + repourl.Redact(repo)
	}
	return ""
}

// changesText says whether a resolution moves anything.
func changesText(c resolve.Changes) string {
	switch {
	case c.First:
		return "no lock yet, it would be written"
	case c.None():
		return "nothing moved, the lock stays as it is"
	}
	return "it would be rewritten:"
}

// planOld is the lock file's lock in an online dry run.
type planOld struct{ l *versions.Lock }

// commitOf is the commit the old lock held for the part at key
// ("ComfyUI", "custom_nodes/NAME"), "" when none.
func (o planOld) commitOf(key string) string {
	name, isNode := strings.CutPrefix(key, "custom_nodes/")
	if !isNode {
		name = "" // the core
	}
	return o.l.CommitOf(name)
}

func (r *realizer) loadStateReadOnly() {
	r.state = &targetState{Parts: map[string]*checkout.Checkout{}, Models: map[string]placedModel{}}
	if data, err := os.ReadFile(r.stateFile); err == nil {
		_ = json.Unmarshal(data, r.state)
	}
}

func (r *realizer) planVenv(ctx context.Context, w io.Writer) {
	// The requirements a realize reads after its checkouts: from the
	// target for a part in place, else from the mirror at the locked
	// commit (read only; a mirror without it means "install").
	var assumed []string
	reqs, _, err := r.requirementsFrom(func(i int, p part) (reqfile.Source, error) {
		if r.partUnchanged(ctx, i, p) {
			return reqfile.DirSource(filepath.Join(r.target, filepath.FromSlash(p.key))), nil
		}
		g, err := r.cache.Open(r.repoURL(i))
		if err != nil {
			return nil, err
		}
		if _, err := g.CommitObject(plumbing.NewHash(p.repo.Commit)); err != nil {
			// A commit the mirror lacks (a moved ref; a dry run
			// fetches nothing) is read where the lock file had it.
			was := r.planOld.commitOf(p.key)
			if _, err := g.CommitObject(plumbing.NewHash(was)); was == "" || err != nil {
				return nil, err
			}
			assumed = append(assumed, fmt.Sprintf("%s at %s (read at %s)", p.key, p.repo.Commit, was))
			return CommitSource(g, was), nil
		}
		return CommitSource(g, p.repo.Commit), nil
	})
	for _, a := range assumed {
		fmt.Fprintf(w, "  assume      the requirement lines of %s did not change; if they did, the venv is made again\n", a)
	}
	if err == nil && r.venvUnchanged(reqs) {
		fmt.Fprintf(w, "  unchanged   %s (%s)\n", filepath.Join(r.target, ".venv"), progress.Count(len(r.lock.Python.Packages), "package", "packages"))
		return
	}
	flags := ""
	if r.spec.Python.SystemSitePackages {
		flags = " --system-site-packages"
	}
	fmt.Fprintf(w, "  venv        %s -m venv%s %s\n", r.opts.Python, flags, filepath.Join(r.target, ".venv"))
	pip := strings.Join(r.pipOptions().IndexArgs(), " ")
	if r.lock.Python.Inputs != "" && len(r.lock.Python.Packages) == 0 {
		fmt.Fprintln(w, "  pip         nothing to install (the locked Python set is empty)")
		return
	}
	if len(r.lock.Python.Packages) > 0 {
		fmt.Fprintf(w, "  pip         install --no-deps %s the %d locked packages:\n", pip, len(r.lock.Python.Packages))
		for _, p := range r.lock.Python.Packages {
			fmt.Fprintf(w, "                %s==%s (%s)\n", p.Name, p.Version, p.Wheel)
		}
		return
	}
	var rs []string
	for _, p := range r.parts() {
		rs = append(rs, "-r "+filepath.Join(r.target, p.key, "requirements.txt"))
	}
	if len(r.spec.Python.Requirements) > 0 {
		rs = append(rs, fmt.Sprintf("%q", r.spec.Python.Requirements))
	}
	fmt.Fprintf(w, "  pip         install %s %s (one resolver run; each part's requirements.txt, else its pyproject.toml dependencies, checked and rewritten)\n", pip, strings.Join(rs, " "))
	r.planOverrides(w)
}

func (r *realizer) planModels(ctx context.Context, w io.Writer) {
	if r.opts.SkipModels {
		fmt.Fprintln(w, "  models      skipped")
		return
	}
	f := r.fetcher()
	for _, m := range r.spec.Models {
		if lm, ok := r.modelInPlace(m); ok {
			fmt.Fprintf(w, "  unchanged   %s (%s)\n", filepath.Join(r.modelsDir, filepath.FromSlash(m.Dest())), progress.Size(lm.Size))
			continue
		}
		req := models.RequestFor(m)
		if lm, ok := r.lockedModel(m); ok {
			req.SHA256, req.URL = lm.SHA256, lm.URL
		}
		res, stored, err := f.Plan(ctx, req)
		dest := filepath.Join(r.modelsDir, filepath.FromSlash(m.Dest()))
		switch {
		case err != nil:
			fmt.Fprintf(w, "  MISSING     %s: %v\n", m.Source, err)
		case stored:
			fmt.Fprintf(w, "  link        %s (%s, in the cache) -> %s\n", m.Source, progress.Size(res.Size), dest)
		default:
			fmt.Fprintf(w, "  download    %s (%s) from %s -> %s\n", m.Source, progress.Size(res.Size), repourl.Redact(res.URL), dest)
		}
	}
}
