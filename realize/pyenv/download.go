package pyenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

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
	args := []string{"-m", "pip", "download", "--disable-pip-version-check", "--no-input",
		"--dest", work, "--only-binary=:all:", "--python-version", t.Version,
		"--implementation", "cp", "--abi", t.abi(), "--abi", "abi3", "--abi", "none"}
	for _, p := range t.Platforms() {
		args = append(args, "--platform", p)
	}
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
