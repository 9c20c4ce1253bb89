// Package pyenv makes a version's virtualenv on the host with the host's
// `python3 -m venv` and pip: one resolver run over ComfyUI's and every
// node's requirements, the torch family held back by constraints, and the
// installed set read from pip's --report for the lock.
package pyenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/comfy-image/comfy-image/internal/childproc"
	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/internal/reqfile"
	"github.com/comfy-image/comfy-image/versions"
)

// TorchFamily are the packages a custom node must not replace once the
// version has chosen them.
var TorchFamily = []string{"torch", "torchvision", "torchaudio", "xformers"}

// Requirements is one requirements source: ComfyUI, a node, or the spec.
type Requirements struct {
	// Owner names it in messages: "ComfyUI", "node gguf", "python.requirements".
	Owner string
	// Lines are checked requirement lines (see Load): pip only ever gets
	// a file the tool wrote from them, never a repository's own file.
	Lines []string
}

// Load reads a repository's requirements file through the one parser
// (reqfile), applies the spec's python.overrides, and returns the source
// with what the overrides changed. ok is false when the file does not exist.
func Load(src reqfile.Source, owner, file string, overrides map[string]*string) (Requirements, []reqfile.Applied, bool, error) {
	if _, err := src.ReadFile(file); errors.Is(err, fs.ErrNotExist) {
		return Requirements{}, nil, false, nil
	}
	lines, err := reqfile.Parse(src, owner, file)
	if err != nil {
		return Requirements{}, nil, false, err
	}
	lines, applied := reqfile.Override(owner, lines, overrides)
	r := Requirements{Owner: owner, Lines: []string{}}
	for _, l := range lines {
		r.Lines = append(r.Lines, l.Text)
	}
	return r, applied, true, nil
}

// LoadRepo reads a repository's requirements as comfy-cli does:
// requirements.txt, or, when there is none, [project].dependencies of its
// pyproject.toml, both through the one parser with python.overrides
// applied. ok is false when the repository declares neither.
func LoadRepo(src reqfile.Source, owner string, overrides map[string]*string) (Requirements, []reqfile.Applied, bool, error) {
	r, applied, ok, err := Load(src, owner, "requirements.txt", overrides)
	if ok || err != nil {
		return r, applied, ok, err
	}
	if _, err := src.ReadFile(reqfile.Pyproject); errors.Is(err, fs.ErrNotExist) {
		return Requirements{}, nil, false, nil
	}
	lines, ok, err := reqfile.ParsePyproject(src, owner, reqfile.Pyproject)
	if err != nil || !ok {
		return Requirements{}, nil, false, err
	}
	lines, applied = reqfile.Override(owner, lines, overrides)
	r = Requirements{Owner: owner, Lines: []string{}}
	for _, l := range lines {
		r.Lines = append(r.Lines, l.Text)
	}
	return r, applied, true, nil
}

// SpecLines checks the spec's python.requirements with the same parser and
// applies the overrides to them too.
func SpecLines(lines []string, overrides map[string]*string) (Requirements, []reqfile.Applied, error) {
	const owner = "python.requirements"
	var parsed []reqfile.Line
	for i, l := range lines {
		name, err := reqfile.Check(l)
		if err != nil {
			return Requirements{}, nil, &reqfile.Error{Owner: "spec", File: "python.requirements", Line: i + 1, Problem: err.Error()}
		}
		parsed = append(parsed, reqfile.Line{Text: l, Name: name, File: "python.requirements", Num: i + 1})
	}
	parsed, applied := reqfile.Override(owner, parsed, overrides)
	r := Requirements{Owner: owner, Lines: []string{}}
	for _, l := range parsed {
		r.Lines = append(r.Lines, l.Text)
	}
	return r, applied, nil
}

// Options are the pip settings of one install.
type Options struct {
	// WheelsDir adds --no-index --find-links DIR to every pip call.
	WheelsDir string
	// Offline means no index at all (only WheelsDir).
	Offline bool
	// IndexURLs are package indexes (ignored with WheelsDir or Offline).
	IndexURLs []string
	// Pre allows pre-releases (the spec's python.pre).
	Pre bool
	// CacheDir is pip's HTTP and wheel cache ("" for none): children get a
	// private HOME, so pip's default cache would not outlive the run.
	CacheDir string
	// Log receives pip's output line by line.
	Log io.Writer
	// BasePackages, when not nil, are the packages of the base image's
	// site packages (python.system_site_packages): DownloadWheels
	// resolves with them as installed and fetches only what they lack.
	BasePackages []BasePackage

	env []string // set for pip besides pipEnv
}

// IndexArgs are the pip flags choosing where packages come from.
func (o Options) IndexArgs() []string {
	var args []string
	if o.Pre {
		args = append(args, "--pre")
	}
	switch {
	case o.WheelsDir != "":
		return append(args, "--no-index", "--find-links", o.WheelsDir)
	case o.Offline:
		return append(args, "--no-index")
	}
	for i, u := range o.IndexURLs {
		if i == 0 {
			args = append(args, "--index-url", u)
		} else {
			args = append(args, "--extra-index-url", u)
		}
	}
	return args
}

// Venv is a virtualenv directory.
type Venv struct{ Dir string }

// Python is the venv's interpreter.
func (v Venv) Python() string { return filepath.Join(v.Dir, "bin", "python") }

// Exists reports whether the venv has a working layout, pip included (a
// venv that an older run left half made has none).
func (v Venv) Exists() bool {
	_, err1 := os.Stat(filepath.Join(v.Dir, "pyvenv.cfg"))
	_, err2 := os.Stat(v.Python())
	pip, _ := filepath.Glob(filepath.Join(v.Dir, "lib", "python*", "site-packages", "pip", "__init__.py"))
	return err1 == nil && err2 == nil && len(pip) > 0
}

// Create runs `python -m venv` (with --system-site-packages if asked) in
// a temporary folder beside dir, makes it relocatable and renames it into
// place: a run killed mid-way leaves no half venv (one without pip) that a
// later run would take for a finished one.
func Create(ctx context.Context, python, dir string, systemSite bool) (Venv, error) {
	v := Venv{Dir: dir}
	parent := filepath.Dir(dir)
	// Whatever a killed run left beside dir goes first, even when the venv
	// itself is finished: it is no part of the target.
	removeStale(parent, filepath.Base(dir))
	if v.Exists() {
		return v, nil
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return v, err
	}
	work, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return v, err
	}
	defer os.RemoveAll(work)
	// MkdirTemp makes it 0700; renamed into place it would keep that and
	// lock out the user ComfyUI runs as. python -m venv makes 0755.
	if err := os.Chmod(work, 0o755); err != nil {
		return v, err
	}
	// The prompt would otherwise be the temporary folder's name.
	args := []string{"-m", "venv", "--prompt", filepath.Base(dir)}
	if systemSite {
		args = append(args, "--system-site-packages")
	}
	out, err := childproc.Command(ctx, python, append(args, work)...).CombinedOutput()
	if err != nil {
		return v, fmt.Errorf("%s -m venv %s: %v\n%s", python, dir, err, out)
	}
	// ensurepip wrote the temporary path into pip's scripts and pyvenv.cfg.
	if err := (Venv{Dir: work}).MakeRelocatable(); err != nil {
		return v, fmt.Errorf("venv: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return v, err
	}
	if err := os.Rename(work, dir); err != nil {
		return v, fmt.Errorf("place venv %s: %w", dir, err)
	}
	return v, nil
}

// removeStale deletes temporary venvs that killed runs left beside dir.
func removeStale(parent, base string) {
	stale, _ := filepath.Glob(filepath.Join(parent, "."+base+".tmp-*"))
	for _, d := range stale {
		os.RemoveAll(d)
	}
}

// Installed lists the versions of the given distributions visible to the
// venv's python (including system site packages), by normalized name.
func (v Venv) Installed(ctx context.Context, names []string) (map[string]string, error) {
	script := `import importlib.metadata as m, json, sys
out = {}
for n in sys.argv[1:]:
    try:
        out[n] = m.version(n)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))`
	out, err := childproc.Command(ctx, v.Python(), append([]string{"-c", script}, names...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("list installed packages: %w", err)
	}
	got := map[string]string{}
	return got, json.Unmarshal(out, &got)
}

// Install resolves and installs all requirement sources in one pip run,
// with constraints (lines like "torch==2.4.0") holding packages back. It
// returns the installed set from pip's --report.
func (v Venv) Install(ctx context.Context, reqs []Requirements, constraints []string, opts Options) ([]versions.LockedPackage, error) {
	work, err := os.MkdirTemp("", "comfy-pip-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	args := []string{"-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-compile",
		"--report", filepath.Join(work, "report.json")}
	args = append(args, opts.IndexArgs()...)
	reqArgs, n, err := requirementArgs(work, reqs, constraints)
	if err != nil {
		return nil, err
	}
	args = append(args, reqArgs...)
	if n == 0 {
		return []versions.LockedPackage{}, nil
	}
	out, err := v.pip(ctx, args, opts, work)
	if err != nil {
		return nil, explainFailure(out, reqs, constraints, err)
	}
	return readReport(filepath.Join(work, "report.json"))
}

// InstallLocked installs exactly the locked set: pinned versions, checked
// hashes, no dependency resolution.
func (v Venv) InstallLocked(ctx context.Context, pkgs []versions.LockedPackage, opts Options) error {
	if len(pkgs) == 0 {
		return nil
	}
	var b strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&b, "%s==%s", p.Name, p.Version)
		if p.SHA256 != "" {
			fmt.Fprintf(&b, " --hash=sha256:%s", p.SHA256)
		}
		b.WriteByte('\n')
	}
	work, err := os.MkdirTemp("", "comfy-pip-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	file := filepath.Join(work, "locked.txt")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		return err
	}
	args := []string{"-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-compile", "--no-deps"}
	if allHashed(pkgs) {
		args = append(args, "--require-hashes")
	}
	args = append(append(args, opts.IndexArgs()...), "-r", file)
	if out, err := v.pip(ctx, args, opts, work); err != nil {
		return fmt.Errorf("pip install of the locked set failed: %v\n%s", err, tail(out, 30))
	}
	return nil
}

func allHashed(pkgs []versions.LockedPackage) bool {
	for _, p := range pkgs {
		if p.SHA256 == "" {
			return false
		}
	}
	return true
}

// pip runs the venv's pip, streaming its output as "pip: " lines. With a
// wheels folder or offline, package sources from the caller's environment
// (PIP_FIND_LINKS, PIP_INDEX_URL, ...) are dropped: only the folder counts.
func (v Venv) pip(ctx context.Context, args []string, opts Options, work string) (string, error) {
	return runPip(ctx, v.Python(), args, opts, work)
}

// pipEnv is what the tool sets for pip itself. PIP_CONFIG_FILE=/dev/null
// makes pip read no configuration file: where packages come from is the
// spec's and the command line's choice, as PIP_* of the caller are not
// passed on either (childproc).
var pipEnv = []string{"PIP_CONFIG_FILE=" + os.DevNull, "PIP_DISABLE_PIP_VERSION_CHECK=1",
	"PIP_NO_WARN_SCRIPT_LOCATION=1", "PYTHONDONTWRITEBYTECODE=1", "PYTHONNOUSERSITE=1"}

// runPip runs `python -m pip ...` (the venv's, or the host's for downloads).
// pip names its requirement files by path: work, the temporary folder
// holding them, is cut from what it prints ("-r locked.txt").
func runPip(ctx context.Context, python string, args []string, opts Options, work string) (string, error) {
	log := opts.Log
	cmd := childproc.Command(ctx, python, args...)
	cmd.Setenv(pipEnv...)
	cmd.Setenv(opts.env...)
	if opts.CacheDir != "" {
		cmd.Setenv("PIP_CACHE_DIR=" + opts.CacheDir)
	} else {
		cmd.Setenv("PIP_NO_CACHE_DIR=1")
	}
	hide := []string{}
	if work != "" {
		hide = append(hide, work+string(filepath.Separator))
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, work); err == nil && !strings.HasPrefix(rel, "..") {
				hide = append(hide, "."+string(filepath.Separator)+rel+string(filepath.Separator), rel+string(filepath.Separator))
			}
		}
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var all bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			for _, h := range hide {
				line = strings.ReplaceAll(line, h, "")
			}
			all.WriteString(line + "\n")
			if log != nil {
				fmt.Fprintln(log, "pip: "+line)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	return all.String(), err
}

type report struct {
	Install []struct {
		Metadata struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"metadata"`
		DownloadInfo struct {
			URL         string `json:"url"`
			ArchiveInfo struct {
				Hash   string            `json:"hash"`
				Hashes map[string]string `json:"hashes"`
			} `json:"archive_info"`
		} `json:"download_info"`
	} `json:"install"`
}

func readReport(file string) ([]versions.LockedPackage, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("pip report: %w", err)
	}
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("pip report: %w", err)
	}
	pkgs := []versions.LockedPackage{}
	for _, it := range r.Install {
		sha := it.DownloadInfo.ArchiveInfo.Hashes["sha256"]
		if sha == "" {
			sha = strings.TrimPrefix(it.DownloadInfo.ArchiveInfo.Hash, "sha256=")
		}
		pkgs = append(pkgs, versions.LockedPackage{
			Name:    Normalize(it.Metadata.Name),
			Version: it.Metadata.Version,
			Wheel:   path.Base(repourl.Redact(it.DownloadInfo.URL)),
			SHA256:  sha,
		})
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs, nil
}

var nameRun = regexp.MustCompile(`[-_.]+`)

// Normalize is the PEP 503 form of a distribution name.
func Normalize(name string) string { return strings.ToLower(nameRun.ReplaceAllString(name, "-")) }

var reqName = regexp.MustCompile(`^\s*([A-Za-z0-9][A-Za-z0-9._-]*)`)

// RequirementNames lists the normalized distribution names a requirements
// text asks for (comments, options and blank lines skipped).
func RequirementNames(text string) map[string]string {
	names := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.SplitN(line, "#", 2)[0])
		if line == "" || strings.HasPrefix(line, "-") {
			continue
		}
		if m := reqName.FindStringSubmatch(line); m != nil {
			names[Normalize(m[1])] = line
		}
	}
	return names
}

// explainFailure turns a failed pip run into an error naming the sources
// (nodes) whose requirements are involved in the conflict.
func explainFailure(out string, reqs []Requirements, constraints []string, err error) error {
	involved := conflictNames(out)
	var lines []string
	held := map[string]string{}
	for _, c := range constraints {
		for n, l := range RequirementNames(c) {
			held[n] = l
		}
	}
	for _, r := range reqs {
		text := strings.Join(r.Lines, "\n")
		for n, line := range RequirementNames(text) {
			if involved[n] {
				note := ""
				if h, ok := held[n]; ok {
					note = fmt.Sprintf(" (held back: the version has %s)", h)
				}
				lines = append(lines, fmt.Sprintf("%s requires %s%s", r.Owner, line, note))
			}
		}
	}
	sort.Strings(lines)
	msg := "pip could not install the requirements"
	if len(lines) > 0 {
		msg += ": " + strings.Join(lines, "; ")
	}
	return fmt.Errorf("%s (%v)\n%s", msg, err, tail(out, 40))
}

var (
	conflictLine = regexp.MustCompile(`(?m)^\s+(?:The user requested(?: \(constraint\))?|[A-Za-z0-9._-]+ [^ ]+ depends on) ([A-Za-z0-9][A-Za-z0-9._-]*)`)
	noMatchLine  = regexp.MustCompile(`(?m)(?:No matching distribution found for|Could not find a version that satisfies the requirement) ([A-Za-z0-9][A-Za-z0-9._-]*)`)
)

// conflictNames picks the package names pip blamed.
func conflictNames(out string) map[string]bool {
	names := map[string]bool{}
	for _, m := range conflictLine.FindAllStringSubmatch(out, -1) {
		names[Normalize(m[1])] = true
	}
	for _, m := range noMatchLine.FindAllStringSubmatch(out, -1) {
		names[Normalize(m[1])] = true
	}
	return names
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// requirementArgs writes the constraints and the requirement lines into
// files under work and returns pip's -c/-r arguments, with how many
// requirement sources they name.
func requirementArgs(work string, reqs []Requirements, constraints []string) ([]string, int, error) {
	var args []string
	if len(constraints) > 0 {
		file := filepath.Join(work, "constraints.txt")
		if err := os.WriteFile(file, []byte(strings.Join(constraints, "\n")+"\n"), 0o644); err != nil {
			return nil, 0, err
		}
		args = append(args, "-c", file)
	}
	n := 0
	for i, r := range reqs {
		if len(r.Lines) == 0 {
			continue
		}
		file := filepath.Join(work, fmt.Sprintf("req-%d.txt", i))
		if err := os.WriteFile(file, []byte(strings.Join(r.Lines, "\n")+"\n"), 0o644); err != nil {
			return nil, 0, err
		}
		args = append(args, "-r", file)
		n++
	}
	return args, n, nil
}

// TorchConstraints pins the torch family a version chose, so no custom
// node can replace it: the spec's python.requirements lines naming those
// packages, then name==version for what the system site packages provide
// (installed; nil when they are not used).
func TorchConstraints(specLines []string, installed map[string]string) []string {
	var cs []string
	pinned := map[string]bool{}
	for _, line := range specLines {
		for name, l := range RequirementNames(line) {
			for _, t := range TorchFamily {
				if name == t {
					cs, pinned[name] = append(cs, l), true
				}
			}
		}
	}
	for _, t := range TorchFamily {
		if ver, ok := installed[t]; ok && !pinned[t] {
			cs = append(cs, t+"=="+ver)
		}
	}
	sort.Strings(cs)
	return cs
}
