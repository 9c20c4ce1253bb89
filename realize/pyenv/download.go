package pyenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/comfy-image/comfy-image/internal/childproc"
	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/versions"
)

// Target is the Python of a base image that a venv is built for.
type Target struct {
	// Python is the interpreter's absolute path in the image.
	Python string `json:"python"`
	// Version is "3.11"; Arch is "x86_64" or "aarch64"; Glibc is "2.36".
	Version string `json:"version"`
	Arch    string `json:"arch"`
	Glibc   string `json:"glibc"`
}

// Platforms are the wheel platform tags the target can run: manylinux_2_N
// down to 2_17 and the legacy aliases.
func (t Target) Platforms() []string {
	var out []string
	major, minor := 2, 17
	fmt.Sscanf(t.Glibc, "%d.%d", &major, &minor)
	for m := minor; m >= 5; m-- {
		out = append(out, fmt.Sprintf("manylinux_2_%d_%s", m, t.Arch))
	}
	out = append(out, "manylinux2014_"+t.Arch)
	if t.Arch == "x86_64" {
		out = append(out, "manylinux2010_"+t.Arch, "manylinux1_"+t.Arch)
	}
	return out
}

// abi is "cp311" for "3.11".
func (t Target) abi() string { return "cp" + strings.ReplaceAll(t.Version, ".", "") }

// Wheel is a downloaded wheel in the cache.
type Wheel struct {
	versions.LockedPackage
	File string
}

// DownloadWheels has the host's pip resolve the requirements for target
// and fetch the wheels (binary only) into dest; with locked packages it
// fetches exactly those, checking their hashes. Wheels already in dest with
// the locked hash are not fetched again (so --offline works from the cache).
func DownloadWheels(ctx context.Context, hostPython string, t Target, reqs []Requirements, constraints []string, locked []versions.LockedPackage, opts Options, dest string) ([]Wheel, error) {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, err
	}
	if len(locked) > 0 {
		if ws, ok := wheelsPresent(dest, locked); ok {
			return ws, nil
		}
	}
	work, err := os.MkdirTemp(dest, ".download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if len(locked) == 0 && opts.BasePackages != nil {
		// Resolve against the base first; then fetch exactly what it lacks.
		add, err := resolveOnBase(ctx, hostPython, t, reqs, constraints, opts, work)
		if err != nil || len(add) == 0 {
			return []Wheel{}, err
		}
		locked = add
	}
	args := append([]string{"-m", "pip", "download", "--disable-pip-version-check", "--no-input",
		"--dest", work}, targetArgs(t)...)
	args = append(args, opts.IndexArgs()...)
	if len(locked) > 0 {
		file := filepath.Join(work, "locked.txt")
		var b strings.Builder
		for _, p := range locked {
			fmt.Fprintf(&b, "%s==%s --hash=sha256:%s\n", p.Name, p.Version, p.SHA256)
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--no-deps", "--require-hashes", "-r", file)
	} else {
		reqArgs, n, err := requirementArgs(work, reqs, constraints)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return []Wheel{}, nil
		}
		args = append(args, reqArgs...)
	}
	out, err := runPip(ctx, hostPython, args, opts, work)
	if err != nil {
		return nil, explainDownload(out, reqs, constraints, err, t)
	}
	return adoptWheels(work, dest)
}

// adoptWheels moves downloaded wheels into dest and describes them.
func adoptWheels(work, dest string) ([]Wheel, error) {
	files, err := filepath.Glob(filepath.Join(work, "*.whl"))
	if err != nil {
		return nil, err
	}
	var ws []Wheel
	for _, f := range files {
		sum, err := fileutil.SHA256(f)
		if err != nil {
			return nil, err
		}
		final := filepath.Join(dest, filepath.Base(f))
		if err := os.Rename(f, final); err != nil {
			return nil, err
		}
		ws = append(ws, wheelOf(final, sum))
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Name < ws[j].Name })
	return ws, nil
}

// wheelsPresent finds every locked wheel in dir with its locked hash.
func wheelsPresent(dir string, locked []versions.LockedPackage) ([]Wheel, bool) {
	var ws []Wheel
	for _, p := range locked {
		file := filepath.Join(dir, p.Wheel)
		sum, err := fileutil.SHA256(file)
		if err != nil || sum != p.SHA256 {
			return nil, false
		}
		ws = append(ws, Wheel{LockedPackage: p, File: file})
	}
	return ws, true
}

// wheelOf reads name and version from a wheel's file name.
func wheelOf(file, sum string) Wheel {
	parts := strings.Split(strings.TrimSuffix(filepath.Base(file), ".whl"), "-")
	w := Wheel{File: file, LockedPackage: versions.LockedPackage{Wheel: filepath.Base(file), SHA256: sum}}
	if len(parts) >= 2 {
		w.Name, w.Version = Normalize(parts[0]), parts[1]
	}
	return w
}

// explainDownload names the requirement that has no wheel for the target.
func explainDownload(out string, reqs []Requirements, constraints []string, err error, t Target) error {
	if m := noMatchLine.FindStringSubmatch(out); m != nil {
		owners := ownersOf(Normalize(m[1]), reqs)
		return fmt.Errorf("no wheel of %s for the base image's Python %s (%s, glibc %s)%s; add a wheel to --wheels-dir or pin a version that has one\n%s",
			m[1], t.Version, t.Arch, t.Glibc, owners, tail(out, 20))
	}
	return explainFailure(out, reqs, constraints, err)
}

func ownersOf(name string, reqs []Requirements) string {
	var who []string
	for _, r := range reqs {
		text := strings.Join(r.Lines, "\n")
		if _, ok := RequirementNames(text)[name]; ok {
			who = append(who, r.Owner)
		}
	}
	if len(who) == 0 {
		return ""
	}
	return ", required by " + strings.Join(who, ", ")
}

// BasePackage is a distribution installed in a base image's site
// packages, described by its metadata (the header block of METADATA or
// PKG-INFO, and an egg-info's requires.txt).
type BasePackage struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Format   string `json:"format"` // dist-info or egg-info
	Metadata string `json:"metadata"`
	Requires string `json:"requires,omitempty"`
}

// ParseBasePackage reads name and version from a distribution's metadata
// headers; ok is false when either is missing.
func ParseBasePackage(format, metadata, requires string) (BasePackage, bool) {
	p := BasePackage{Format: format, Metadata: metadata, Requires: requires}
	for _, line := range strings.Split(metadata, "\n") {
		k, v, ok := strings.Cut(line, ":")
		switch {
		case !ok:
		case strings.EqualFold(k, "Name") && p.Name == "":
			p.Name = Normalize(strings.TrimSpace(v))
		case strings.EqualFold(k, "Version") && p.Version == "":
			p.Version = strings.TrimSpace(v)
		}
	}
	return p, p.Name != "" && p.Version != "" && validDistPart.MatchString(p.Name) && validDistPart.MatchString(p.Version)
}

// validDistPart keeps a base's name or version from becoming a path or an
// option when it is written into the stand-in site folder.
var validDistPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+!-]*$`)

// writeBaseSite lays the base's packages out as metadata-only
// distributions (no code) in dir: pip, with dir on its path, sees them as
// installed.
func writeBaseSite(dir string, pkgs []BasePackage) error {
	for _, p := range pkgs {
		stem := strings.ReplaceAll(p.Name, "-", "_") + "-" + p.Version
		files := map[string]string{stem + ".dist-info/METADATA": p.Metadata}
		if p.Format == "egg-info" {
			files = map[string]string{stem + ".egg-info/PKG-INFO": p.Metadata, stem + ".egg-info/requires.txt": p.Requires}
		}
		for name, content := range files {
			file := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// onBaseDriver runs pip's install command with the one check lifted that
// refuses --platform/--python-version/--abi without --target (pip 23 and
// 24): --target makes pip ignore what is installed, and here what is
// installed (the base's packages) is the point. With --dry-run --report
// pip installs nothing; it resolves against the base's packages and
// reports what it would add.
const onBaseDriver = `import sys
from pip._internal.cli import cmdoptions
_check = cmdoptions.check_dist_restriction
def _check_without_target(options, check_target=False):
    _check(options, check_target=False)
cmdoptions.check_dist_restriction = _check_without_target
from pip._internal.cli.main import main
sys.exit(main())
`

// resolveOnBase has the host's pip resolve reqs for target as if the
// base's packages were installed: a requirement they satisfy is not
// downloaded; what they lack is returned (name, version, hash), and a
// requirement that conflicts with them (or with the constraints, which pin
// the base's torch family) fails naming its owner.
//
// pip runs with -S (no site packages of the host) and PYTHONPATH holding
// only a folder with its own package linked in and the stand-in site of
// the base: the only installed distributions it sees are the base's.
func resolveOnBase(ctx context.Context, hostPython string, t Target, reqs []Requirements, constraints []string, opts Options, work string) ([]versions.LockedPackage, error) {
	pipDir, err := childproc.Command(ctx, hostPython, "-c", "import os, pip; print(os.path.dirname(pip.__file__))").Output()
	if err != nil {
		return nil, fmt.Errorf("find the host's pip (%s): %w", hostPython, err)
	}
	shim, site := filepath.Join(work, "pip-only"), filepath.Join(work, "base-site")
	if err := os.MkdirAll(shim, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(strings.TrimSpace(string(pipDir)), filepath.Join(shim, "pip")); err != nil {
		return nil, err
	}
	if err := writeBaseSite(site, opts.BasePackages); err != nil {
		return nil, fmt.Errorf("stand-in site of the base: %w", err)
	}
	driver := filepath.Join(work, "pip-on-base.py")
	if err := os.WriteFile(driver, []byte(onBaseDriver), 0o644); err != nil {
		return nil, err
	}
	reportFile := filepath.Join(work, "report.json")
	args := append([]string{"-S", driver, "install", "--disable-pip-version-check", "--no-input",
		"--dry-run", "--report", reportFile}, targetArgs(t)...)
	args = append(args, opts.IndexArgs()...)
	reqArgs, n, err := requirementArgs(work, reqs, constraints)
	if err != nil || n == 0 {
		return []versions.LockedPackage{}, err
	}
	opts.env = []string{"PYTHONPATH=" + shim + string(os.PathListSeparator) + site}
	out, err := runPip(ctx, hostPython, append(args, reqArgs...), opts, work)
	if err != nil {
		err = explainDownload(out, reqs, constraints, err, t)
		var has []string
		involved := conflictNames(out)
		for _, p := range opts.BasePackages {
			if involved[p.Name] {
				has = append(has, p.Name+" "+p.Version)
			}
		}
		if len(has) > 0 {
			err = fmt.Errorf("the base image has %s (python.system_site_packages): %w", strings.Join(has, ", "), err)
		}
		return nil, err
	}
	return readReport(reportFile)
}

// targetArgs are pip's flags choosing wheels for the base's Python.
func targetArgs(t Target) []string {
	args := []string{"--only-binary=:all:", "--python-version", t.Version,
		"--implementation", "cp", "--abi", t.abi(), "--abi", "abi3", "--abi", "none"}
	for _, p := range t.Platforms() {
		args = append(args, "--platform", p)
	}
	return args
}
