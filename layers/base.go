package layers

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/comfy-image/comfy-image/realize/pyenv"
	"github.com/comfy-image/comfy-image/versions"
)

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// BaseInfo is what the build needs to know of a base image, read from its
// filesystem without running it.
type BaseInfo struct {
	pyenv.Target
	// Torch holds the torch family the base ships (name -> version), which
	// python.system_site_packages reuses.
	Torch map[string]string `json:"torch,omitempty"`
}

var (
	pythonBin  = regexp.MustCompile(`^usr/(local/)?bin/python3\.(\d+)$`)
	libcFile   = regexp.MustCompile(`(^|/)(libc\.so\.6|libc-2\.\d+\.so)$`)
	glibcVer   = regexp.MustCompile(`GNU C Library [^\n]*?version (\d+)\.(\d+)`)
	distInfoRe = regexp.MustCompile(`^usr/(?:local/)?lib/python3(?:\.\d+)?/(?:site|dist)-packages/([A-Za-z0-9_.]+)-([^-/]+)\.dist-info/METADATA$`)
)

// ReadBase finds the base's python3.X (preferring /usr/local/bin, then the
// newest), its glibc version (for manylinux tags) and its architecture. The
// answer is cached by the base's digest under cacheDir.
func ReadBase(img v1.Image, cacheDir string) (BaseInfo, error) {
	digest, err := img.Digest()
	if err != nil {
		return BaseInfo{}, err
	}
	meta := filepath.Join(cacheDir, "bases", digest.Hex+".json")
	var info BaseInfo
	if data, err := os.ReadFile(meta); err == nil && json.Unmarshal(data, &info) == nil && info.Python != "" {
		return info, nil
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return BaseInfo{}, err
	}
	info.Arch = archOf(cf.Architecture)
	if info.Arch == "" {
		return BaseInfo{}, fmt.Errorf("base image architecture %q: expected amd64 or arm64", cf.Architecture)
	}
	if err := scanRootfs(img, &info); err != nil {
		return BaseInfo{}, err
	}
	if info.Python == "" {
		return BaseInfo{}, errors.New("base image has no python3.X in /usr/bin or /usr/local/bin; the venv needs the base's Python")
	}
	if info.Glibc == "" {
		return BaseInfo{}, errors.New("base image has no glibc (libc.so.6); wheels need a glibc-based image (musl is not supported)")
	}
	data, _ := json.Marshal(info)
	return info, versions.WriteFileAtomic(meta, data, 0o644)
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

// scanRootfs reads the flattened filesystem once (whiteouts applied).
func scanRootfs(img v1.Image, info *BaseInfo) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	best := -1
	info.Torch = map[string]string{}
	torch := map[string]bool{}
	for _, t := range pyenv.TorchFamily {
		torch[t] = true
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
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
		if libcFile.MatchString(name) && hdr.Typeflag == tar.TypeReg && info.Glibc == "" {
			data, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return err
			}
			if m := glibcVer.FindSubmatch(data); m != nil {
				info.Glibc = string(m[1]) + "." + string(m[2])
			}
		}
		if m := distInfoRe.FindStringSubmatch(name); m != nil && torch[pyenv.Normalize(m[1])] {
			info.Torch[pyenv.Normalize(m[1])] = m[2]
		}
	}
	return nil
}
