package pyenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// trampoline starts a console script with the python beside it, whatever
// path the venv is mounted at: valid as sh (it execs python on the file)
// and as Python (a string literal), the way relocatable venvs do it.
const trampoline = "#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")/python\" \"$0\" \"$@\"\n' '''\n"

// MakeRelocatable removes the venv's absolute path from everything in it,
// so a target works mounted at /workspace in a pod and /runpod-volume in
// serverless: console-script shebangs become the trampoline, activate
// computes its own location, and pyvenv.cfg drops the "command" line.
func (v Venv) MakeRelocatable() error {
	abs, err := filepath.Abs(v.Dir)
	if err != nil {
		return err
	}
	if err := v.fixPyvenvCfg(); err != nil {
		return err
	}
	if err := removePycache(abs); err != nil {
		return err
	}
	bin := filepath.Join(abs, "bin")
	entries, err := os.ReadDir(bin)
	if err != nil {
		return err
	}
	rewritten := map[string]bool{}
	for _, e := range entries {
		file := filepath.Join(bin, e.Name())
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if !bytes.Contains(data, []byte(abs)) {
			continue
		}
		var fixed []byte
		switch {
		case e.Name() == "activate":
			fixed = bytes.ReplaceAll(data, []byte(`VIRTUAL_ENV="`+abs+`"`),
				[]byte(`VIRTUAL_ENV="$(cd "$(dirname -- "${BASH_SOURCE[0]:-$0}")/.." && pwd)"`))
		case bytes.HasPrefix(data, []byte("#!"+abs+"/bin/python")):
			nl := bytes.IndexByte(data, '\n')
			fixed = append([]byte(trampoline), data[nl+1:]...)
		default:
			// activate.csh, activate.fish, Activate.ps1: shells that
			// cannot compute the path the same way; removed rather than
			// left pointing at the wrong place.
			if err := os.Remove(file); err != nil {
				return err
			}
			continue
		}
		if err := os.WriteFile(file, fixed, 0o755); err != nil {
			return err
		}
		rewritten[file] = true
	}
	return fixRecords(abs, rewritten)
}

// removePycache deletes compiled bytecode (ensurepip compiles pip and
// setuptools): it embeds the absolute source paths. Python rebuilds it on use.
func removePycache(venv string) error {
	var dirs []string
	err := filepath.WalkDir(venv, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "__pycache__" {
			dirs = append(dirs, p)
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	return nil
}

// fixRecords updates the hash and size of rewritten scripts in the RECORD
// files of the installed distributions, so the RECORDs stay true.
func fixRecords(venv string, rewritten map[string]bool) error {
	if len(rewritten) == 0 {
		return nil
	}
	records, err := filepath.Glob(filepath.Join(venv, "lib", "python*", "site-packages", "*.dist-info", "RECORD"))
	if err != nil {
		return err
	}
	for _, rec := range records {
		data, err := os.ReadFile(rec)
		if err != nil {
			return err
		}
		site := filepath.Dir(filepath.Dir(rec))
		lines := strings.Split(string(data), "\n")
		changed := false
		for i, line := range lines {
			fields := strings.Split(line, ",")
			if len(fields) != 3 {
				continue
			}
			file := filepath.Clean(filepath.Join(site, fields[0]))
			if !rewritten[file] {
				continue
			}
			content, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(content)
			lines[i] = fmt.Sprintf("%s,sha256=%s,%d", fields[0], base64.RawURLEncoding.EncodeToString(sum[:]), len(content))
			changed = true
		}
		if changed {
			if err := os.WriteFile(rec, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func (v Venv) fixPyvenvCfg() error {
	file := filepath.Join(v.Dir, "pyvenv.cfg")
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var keep []string
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "command =") {
			keep = append(keep, line)
		}
	}
	return os.WriteFile(file, []byte(strings.Join(keep, "\n")), 0o644)
}
