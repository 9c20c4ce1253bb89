package snapshot

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/internal/reqfile"

	"github.com/comfy-image/comfy-image/versions"
)

// DefaultComfyRepo is the core a snapshot's comfyui commit is taken from:
// Manager records the commit, not the remote.
const DefaultComfyRepo = "https://github.com/comfyanonymous/ComfyUI"

// ImportOptions say what the snapshot does not: the spec's version id, the
// core's repository, and the file name the spec will have (for errors).
type ImportOptions struct {
	VersionID string
	ComfyRepo string
	SpecFile  string
}

// Imported is a spec made from a snapshot, and what was left out of it.
type Imported struct {
	// Spec is the spec as written: schema_version 2, validated.
	Spec []byte
	// LeftOut names each entry of the snapshot the spec does not carry, and why.
	LeftOut []string
	// Warnings are entries carried with a caveat.
	Warnings []string
}

var commitHex = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Import turns a snapshot (and a comfy-lock.yaml's models) into a spec. The
// spec is checked by the same validator as every spec file; a problem is
// reported against the snapshot entry it came from.
func Import(f *File, opts ImportOptions) (*Imported, error) {
	if opts.ComfyRepo == "" {
		opts.ComfyRepo = DefaultComfyRepo
	}
	out := &Imported{}
	spec := versions.Spec{
		SchemaVersion: versions.SchemaVersion,
		VersionID:     opts.VersionID,
		Comfy:         versions.Repo{Repo: opts.ComfyRepo},
	}
	var problems []versions.Problem
	// origin maps a path of the spec to the snapshot entry it came from.
	origin := map[string]string{"comfy": "comfyui"}
	switch {
	case f.ComfyUI == nil || *f.ComfyUI == "":
		out.Warnings = append(out.Warnings, "comfyui: no commit in the snapshot (saved for custom nodes only); the spec follows the default branch of "+repourl.Redact(opts.ComfyRepo))
	case !commitHex.MatchString(*f.ComfyUI):
		problems = append(problems, versions.Problem{Path: "comfyui", Msg: fmt.Sprintf("%q: expected a 40-character lower-case hex commit", *f.ComfyUI)})
	default:
		spec.Comfy.Commit = *f.ComfyUI
	}

	names := map[string]bool{}
	for _, u := range sortedKeys(f.GitCustomNodes) {
		n := f.GitCustomNodes[u]
		at := fmt.Sprintf("git_custom_nodes[%q]", u)
		if n.Disabled {
			out.LeftOut = append(out.LeftOut, fmt.Sprintf("%s: disabled in the snapshot", at))
			continue
		}
		if !commitHex.MatchString(n.Hash) {
			problems = append(problems, versions.Problem{Path: at + ".hash", Msg: fmt.Sprintf("%q: expected a 40-character lower-case hex commit", n.Hash)})
			continue
		}
		node := versions.Node{Repo: versions.Repo{Repo: u, Commit: n.Hash}}
		if name := uniqueName(versions.DefaultNodeName(u), names); name != versions.DefaultNodeName(u) {
			node.Name = name
		}
		origin[fmt.Sprintf("custom_nodes[%d]", len(spec.CustomNodes))] = at
		spec.CustomNodes = append(spec.CustomNodes, node)
	}
	for _, id := range sortedKeys(f.CNRCustomNodes) {
		node := versions.Node{Registry: id, Version: f.CNRCustomNodes[id]}
		if name := uniqueName(id, names); name != id {
			node.Name = name
		}
		origin[fmt.Sprintf("custom_nodes[%d]", len(spec.CustomNodes))] = fmt.Sprintf("cnr_custom_nodes[%q]", id)
		spec.CustomNodes = append(spec.CustomNodes, node)
	}
	for i, fn := range f.FileCustomNodes {
		why := "single-file nodes are not carried; put the file in a git repository to use it"
		if fn.Disabled {
			why = "disabled in the snapshot"
		}
		out.LeftOut = append(out.LeftOut, fmt.Sprintf("file_custom_nodes[%d] (%s): %s", i, fn.Filename, why))
	}
	for _, k := range sortedKeys(f.Pips) {
		req, ok := requirement(k, f.Pips[k])
		if !ok {
			out.LeftOut = append(out.LeftOut, fmt.Sprintf("pips[%q]: not a requirement pip can install from a spec (editable or option line)", k))
			continue
		}
		// The spec's own rules (no local paths, no index options) decide:
		// a line the spec would refuse is left out and listed, not written.
		if _, err := reqfile.Check(req); err != nil {
			out.LeftOut = append(out.LeftOut, fmt.Sprintf("pips[%q]: %v", k, err))
			continue
		}
		spec.Python.Requirements = append(spec.Python.Requirements, req)
	}
	sort.Strings(spec.Python.Requirements)
	for i, m := range f.Models {
		ms, warn, err := modelsOf(m)
		at := fmt.Sprintf("models[%d]", i)
		if err != nil {
			problems = append(problems, versions.Problem{Path: at, Msg: err.Error()})
			continue
		}
		for _, w := range warn {
			out.Warnings = append(out.Warnings, at+": "+w)
		}
		for _, m := range ms {
			origin[fmt.Sprintf("models[%d]", len(spec.Models))] = at
			spec.Models = append(spec.Models, m)
		}
	}
	if len(problems) > 0 {
		return nil, &versions.SpecError{File: f.Name, Problems: problems}
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	// The one validator every spec goes through; its problems are shown
	// against the snapshot entries they came from.
	if _, err := versions.Parse(opts.SpecFile, data, func(string) (string, bool) { return "", true }); err != nil {
		return nil, blame(f.Name, err, origin)
	}
	out.Spec = data
	return out, nil
}

// blame rewrites a spec error's paths to the snapshot entries they came from.
func blame(file string, err error, origin map[string]string) error {
	se, ok := err.(*versions.SpecError)
	if !ok {
		return err
	}
	ps := make([]versions.Problem, 0, len(se.Problems))
	for _, p := range se.Problems {
		for specPath, snapPath := range origin {
			if p.Path == specPath || strings.HasPrefix(p.Path, specPath+".") {
				p.Msg = fmt.Sprintf("%s (spec field %s)", p.Msg, p.Path)
				p.Path = snapPath
				break
			}
		}
		ps = append(ps, p)
	}
	return &versions.SpecError{File: file, Problems: ps}
}

func uniqueName(base string, taken map[string]bool) string {
	name := base
	for i := 2; taken[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	taken[name] = true
	return name
}

// requirement turns one pip freeze entry into a requirement line, with the
// name in its PEP 503 form so a snapshot exported from a lock imports back
// to the same spec.
func requirement(key, value string) (string, bool) {
	key = strings.TrimSpace(key)
	if key == "" || strings.HasPrefix(key, "-") || strings.HasPrefix(key, "#") {
		return "", false
	}
	if value != "" {
		return normalizeName(key) + " @ " + value, true
	}
	name, ver, ok := strings.Cut(key, "==")
	if !ok {
		return "", false
	}
	return normalizeName(name) + "==" + strings.TrimSpace(ver), true
}

var nameRun = regexp.MustCompile(`[-_.]+`)

func normalizeName(n string) string {
	return strings.ToLower(nameRun.ReplaceAllString(strings.TrimSpace(n), "-"))
}

// modelsOf turns a comfy-lock.yaml model into one spec model per path.
func modelsOf(m LockModel) ([]versions.Model, []string, error) {
	if m.URL == "" {
		return nil, nil, fmt.Errorf("model %q has no url; expected the URL it was downloaded from", m.Model)
	}
	source := hfSource(m.URL)
	sha := ""
	for _, h := range m.Hashes {
		if strings.EqualFold(h.Type, "sha256") {
			sha = strings.ToLower(h.Hash)
		}
	}
	if sha == "" && len(m.Hash) == 64 {
		sha = strings.ToLower(m.Hash)
	}
	fileName := path.Base(mustURLPath(source))
	src, _ := versions.ParseSource(source)
	civitai := src.Scheme == "civitai"
	var out []versions.Model
	var warns []string
	paths := m.Paths
	if len(paths) == 0 {
		paths = []ModelPath{{}}
		warns = append(warns, fmt.Sprintf("model %q has no path; placed in %s", m.Model, versions.DefaultTargetSubdir))
	}
	for _, p := range paths {
		dir := strings.Trim(path.Clean("/"+strings.ReplaceAll(p.Path, `\`, "/")), "/")
		dir = strings.TrimPrefix(strings.TrimPrefix(dir, "ComfyUI/"), "models/")
		if dir == "models" || dir == "ComfyUI" {
			dir = ""
		}
		name := ""
		if civitai {
			// A Civitai download URL names no file: the path or the model's name does.
			name, fileName = m.Model, m.Model
			if base := path.Base(dir); strings.Contains(base, ".") {
				name, fileName = base, base
			}
		}
		if base := path.Base(dir); base == fileName || (strings.Contains(base, ".") && dir != "") {
			if base != fileName {
				warns = append(warns, fmt.Sprintf("model %q: path %s names the file %s but the spec names it after its URL (%s)", m.Model, p.Path, base, fileName))
			}
			dir = path.Dir(dir)
		}
		if dir == "." {
			dir = ""
		}
		out = append(out, versions.Model{Source: source, Name: name, TargetSubdir: dir, SHA256: sha})
	}
	return out, warns, nil
}

func mustURLPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Path
}

// hfSource turns a huggingface.co resolve URL into hf://owner/repo/path@rev,
// so HF_TOKEN and HF_ENDPOINT apply to it; other URLs stay as they are.
func hfSource(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host != "huggingface.co" || u.RawQuery != "" {
		return raw
	}
	parts := strings.SplitN(strings.TrimPrefix(u.Path, "/"), "/", 5)
	if len(parts) != 5 || parts[2] != "resolve" || parts[4] == "" {
		return raw
	}
	src := "hf://" + parts[0] + "/" + parts[1] + "/" + parts[4]
	if parts[3] != "main" {
		src += "@" + parts[3]
	}
	return src
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
