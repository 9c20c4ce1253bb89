package layers

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/internal/streams"
	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/versions"
)

// BaseInfo is what the build needs to know of a base image, read from its
// filesystem without running it.
type BaseInfo struct {
	pyenv.Target
	// Torch holds the torch family the base ships (name -> version), which
	// python.system_site_packages reuses.
	Torch map[string]string `json:"torch,omitempty"`
	// Packages are the distributions in the base's site/dist-packages for
	// its Python (from *.dist-info and *.egg-info), by normalized name:
	// with python.system_site_packages the venv takes them from the base.
	Packages []pyenv.BasePackage `json:"packages,omitempty"`
	// PipWheel is the pip wheel the base ships for ensurepip (Debian's
	// python3-venv: /usr/share/python-wheels; python.org builds:
	// ensurepip/_bundled), copied into the cache: the venv gets pip from
	// it, nothing downloaded.
	PipWheel *pyenv.Wheel `json:"pip_wheel,omitempty"`
}

// HasPackage reports whether the base's site packages hold name.
func (i BaseInfo) HasPackage(name string) bool {
	for _, p := range i.Packages {
		if p.Name == pyenv.Normalize(name) {
			return true
		}
	}
	return false
}

var (
	pythonBin = regexp.MustCompile(`^usr/(local/)?bin/python3\.(\d+)$`)
	libcFile  = regexp.MustCompile(`(^|/)(libc\.so\.6|libc-2\.\d+\.so)$`)
	glibcVer  = regexp.MustCompile(`GNU C Library [^\n]*?version (\d+)\.(\d+)`)
	// sitePackage matches the metadata files of an installed distribution:
	// <dist>.dist-info/METADATA, <dist>.egg-info (a file),
	// <dist>.egg-info/PKG-INFO and <dist>.egg-info/requires.txt.
	sitePackage = regexp.MustCompile(`^(usr/(?:local/)?lib/python3(?:\.\d+)?/(?:site|dist)-packages)/([A-Za-z0-9_.+-]+\.(?:dist-info|egg-info))(/METADATA|/PKG-INFO|/requires\.txt)?$`)
	pipWheelRe  = regexp.MustCompile(`^usr/(?:share/python-wheels|(?:local/)?lib/python3\.\d+/ensurepip/_bundled)/(pip-[^/]+\.whl)$`)
)

// baseMetaVersion names the cached BaseInfo's format: a cache entry from
// an older format is read again.
const baseMetaVersion = "v2"

// ReadBase finds the base's python3.X (preferring /usr/local/bin, then the
// newest), its glibc version (for manylinux tags) and its architecture. The
// answer is cached by the base's digest under cacheDir. The read stops
// when ctx ends.
func ReadBase(ctx context.Context, img v1.Image, cacheDir string) (BaseInfo, error) {
	digest, err := img.Digest()
	if err != nil {
		return BaseInfo{}, err
	}
	dir := filepath.Join(cacheDir, "bases")
	meta := filepath.Join(dir, digest.Hex+"."+baseMetaVersion+".json")
	if info, ok := cachedBaseInfo(meta); ok {
		return info, nil
	}
	var info BaseInfo
	cf, err := img.ConfigFile()
	if err != nil {
		return BaseInfo{}, err
	}
	info.Arch = archOf(cf.Architecture)
	if info.Arch == "" {
		return BaseInfo{}, fmt.Errorf("base image architecture %q: expected amd64 or arm64", cf.Architecture)
	}
	if err := scanRootfs(ctx, img, &info, filepath.Join(dir, digest.Hex+"-wheels")); err != nil {
		return BaseInfo{}, err
	}
	if info.Python == "" {
		return BaseInfo{}, errors.New("base image has no python3.X in /usr/bin or /usr/local/bin; the venv needs the base's Python")
	}
	if info.Glibc == "" {
		return BaseInfo{}, errors.New("base image has no glibc (libc.so.6); wheels need a glibc-based image (musl is not supported)")
	}
	data, _ := json.Marshal(info)
	return info, fileutil.WriteAtomic(meta, data, 0o644)
}

// cachedBaseInfo is the BaseInfo cached in meta, when it is whole.
func cachedBaseInfo(meta string) (BaseInfo, bool) {
	var info BaseInfo
	data, err := os.ReadFile(meta)
	ok := err == nil && json.Unmarshal(data, &info) == nil && info.Python != "" && pipWheelIntact(info.PipWheel)
	return info, ok
}

// ReadBaseReadOnly is ReadBase writing nothing under cacheDir (a dry
// run): the cached answer when there is one, else the base read into a
// temporary folder removed after (the info's pip wheel is gone then).
func ReadBaseReadOnly(ctx context.Context, img v1.Image, cacheDir string) (BaseInfo, error) {
	digest, err := img.Digest()
	if err != nil {
		return BaseInfo{}, err
	}
	if info, ok := cachedBaseInfo(filepath.Join(cacheDir, "bases", digest.Hex+"."+baseMetaVersion+".json")); ok {
		return info, nil
	}
	tmp, err := os.MkdirTemp("", "comfy-image-base-")
	if err != nil {
		return BaseInfo{}, err
	}
	defer os.RemoveAll(tmp)
	return ReadBase(ctx, img, tmp)
}

func archOf(goArch string) string {
	switch goArch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return ""
}

// scanRootfs reads the flattened filesystem once (whiteouts applied),
// stopping when ctx ends (a build whose lock failed to resolve does not
// wait for a base read to its end).
func scanRootfs(ctx context.Context, img v1.Image, info *BaseInfo, wheelDir string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(streams.WithContext(ctx, rc))
	best := -1
	pkgs := map[string]*sitePkg{} // by metadata path
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// mutate.Extract ends its tar cleanly before it reports an
			// error met between two files (a layer that cannot be
			// opened): the rest of the stream holds that error. Facts of
			// a half-read base would be cached under its digest.
			if _, err := io.Copy(io.Discard, rc); err != nil {
				return fmt.Errorf("read base filesystem: %w", err)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("read base filesystem: %w", err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if m := pythonBin.FindStringSubmatch(name); m != nil && (hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeSymlink) {
			minor, _ := strconv.Atoi(m[2])
			score := minor * 2
			if m[1] != "" {
				score++ // /usr/local/bin comes first on PATH in python images
			}
			if score > best {
				best = score
				info.Python = "/" + name
				info.Version = "3." + m[2]
			}
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if libcFile.MatchString(name) && info.Glibc == "" {
			data, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return err
			}
			if m := glibcVer.FindSubmatch(data); m != nil {
				info.Glibc = string(m[1]) + "." + string(m[2])
			}
		}
		if m := sitePackage.FindStringSubmatch(name); m != nil {
			if err := readSitePackage(tr, name, m, pkgs); err != nil {
				return err
			}
		}
		if m := pipWheelRe.FindStringSubmatch(name); m != nil && hdr.Size < 64<<20 {
			w, err := savePipWheel(tr, wheelDir, m[1], name)
			if err != nil {
				return err
			}
			info.PipWheel = &w
		}
	}
	info.Packages, info.Torch = basePackages(pkgs, info.Python, info.Version)
	return nil
}

// sitePkg gathers the metadata files of one installed distribution.
type sitePkg struct {
	siteDir  string // usr/lib/python3/dist-packages, ...
	format   string // dist-info or egg-info
	metadata string
	requires string
}

// readSitePackage records one metadata file (m from sitePackage): only its
// header part, which names the distribution and its requirements.
func readSitePackage(r io.Reader, name string, m []string, pkgs map[string]*sitePkg) error {
	data, err := io.ReadAll(io.LimitReader(r, 4<<20))
	if err != nil {
		return fmt.Errorf("read base file %s: %w", name, err)
	}
	key := strings.TrimSuffix(name, m[3])
	p := pkgs[key]
	if p == nil {
		p = &sitePkg{siteDir: m[1], format: path.Ext(m[2])[1:]}
		pkgs[key] = p
	}
	switch m[3] {
	case "/requires.txt":
		p.requires = capLines(string(data))
	case "/METADATA":
		if p.format == "dist-info" {
			p.metadata = metadataHeaders(string(data))
		}
	default: // PKG-INFO, or the egg-info file itself
		if p.format == "egg-info" {
			p.metadata = metadataHeaders(string(data))
		}
	}
	return nil
}

// metadataHeaders is the header block of a METADATA or PKG-INFO file (the
// long description after the first blank line is not needed).
func metadataHeaders(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	if i := strings.Index(s, "\n\n"); i >= 0 {
		s = s[:i+1]
	}
	return capLines(s)
}

// maxMetadata bounds what is kept of one package's metadata (real header
// blocks are a few kB; torch's with its Requires-Dist about 2 kB), so a
// base with thousands of packages stays small in the cache and in memory.
const maxMetadata = 64 << 10

// capLines cuts s to maxMetadata at a line end.
func capLines(s string) string {
	if len(s) <= maxMetadata {
		return s
	}
	s = s[:maxMetadata]
	return s[:strings.LastIndexByte(s, '\n')+1]
}

// sitePath is where the base's Python looks for packages, first first:
// python.org builds in /usr/local/bin see only their own site-packages;
// Debian's and Ubuntu's /usr/bin/python3.X see pip's /usr/local dist-packages
// before the distribution's (other distributions use site-packages).
func sitePath(python, version string) []string {
	if strings.HasPrefix(python, "/usr/local/") {
		return []string{"usr/local/lib/python" + version + "/site-packages"}
	}
	return []string{
		"usr/local/lib/python" + version + "/dist-packages", "usr/lib/python3/dist-packages",
		"usr/lib/python" + version + "/dist-packages",
		"usr/local/lib/python" + version + "/site-packages", "usr/lib/python" + version + "/site-packages",
	}
}

// basePackages keeps the distributions the chosen Python sees, read by
// name and version from their metadata (the first on its path wins, as at
// run time), and picks the torch family among them.
func basePackages(found map[string]*sitePkg, python, version string) ([]pyenv.BasePackage, map[string]string) {
	rank := map[string]int{}
	for i, dir := range sitePath(python, version) {
		rank[dir] = i + 1
	}
	byName := map[string]pyenv.BasePackage{}
	best := map[string]int{}
	keys := make([]string, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same answer every time when a folder holds two
	for _, k := range keys {
		p := found[k]
		r := rank[p.siteDir]
		if r == 0 {
			continue
		}
		bp, ok := pyenv.ParseBasePackage(p.format, p.metadata, p.requires)
		if !ok || (best[bp.Name] != 0 && best[bp.Name] <= r) {
			continue
		}
		byName[bp.Name], best[bp.Name] = bp, r
	}
	torch := map[string]string{}
	for _, t := range pyenv.TorchFamily {
		if p, ok := byName[t]; ok {
			torch[t] = p.Version
		}
	}
	out := make([]pyenv.BasePackage, 0, len(byName))
	for _, p := range byName {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, torch
}

// savePipWheel copies the base's pip wheel into dir (atomically) and
// describes it.
func savePipWheel(r io.Reader, dir, file, inBase string) (pyenv.Wheel, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return pyenv.Wheel{}, err
	}
	tmp, err := os.CreateTemp(dir, ".pip-*")
	if err != nil {
		return pyenv.Wheel{}, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return pyenv.Wheel{}, fmt.Errorf("copy the base's %s: %w", inBase, err)
	}
	final := filepath.Join(dir, file)
	if err := os.Rename(tmp.Name(), final); err != nil {
		return pyenv.Wheel{}, err
	}
	parts := strings.Split(file, "-")
	return pyenv.Wheel{File: final, LockedPackage: versions.LockedPackage{
		Name: "pip", Version: parts[1], Wheel: file, SHA256: hex.EncodeToString(h.Sum(nil))}}, nil
}

// pipWheelIntact reports whether the cached copy of the base's pip wheel
// (if any) is still there with its hash.
func pipWheelIntact(w *pyenv.Wheel) bool {
	if w == nil {
		return true
	}
	sum, err := fileutil.SHA256(w.File)
	return err == nil && sum == w.SHA256
}
