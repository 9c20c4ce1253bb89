package pyenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/comfy-image/comfy-image/internal/fileutil"
	"github.com/comfy-image/comfy-image/internal/progress"
	"github.com/comfy-image/comfy-image/versions"
)

// CheckWheelsDir fails naming every wheel of the locked set that dir holds
// with other bytes than the lock pinned: such a wheel must not be replaced
// silently by a cached copy, nor installed. Wheels dir lacks are left to
// the install (which may take them from the cache, checked by hash).
func CheckWheelsDir(dir string, locked []versions.LockedPackage) error {
	if dir == "" {
		return nil
	}
	var bad []string
	for _, p := range locked {
		if p.Wheel == "" || p.SHA256 == "" || p.Wheel != filepath.Base(p.Wheel) {
			continue
		}
		file := filepath.Join(dir, p.Wheel)
		sum, err := fileutil.SHA256(file)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("--wheels-dir: %w", err)
		}
		if sum != p.SHA256 {
			bad = append(bad, fmt.Sprintf("%s has sha256 %s, the lock pins %s", file, sum, p.SHA256))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("--wheels-dir: %s from the lock (a rebuilt or replaced wheel; restore it, or run `comfy-image lock --update python` to resolve the set again): %s",
			progress.Count(len(bad), "wheel differs", "wheels differ"), strings.Join(bad, "; "))
	}
	return nil
}
