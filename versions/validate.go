package versions

import (
	_ "embed"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/internal/reqfile"
)

// SchemaJSON is the published JSON Schema of the spec format.
//
//go:embed schema.json
var SchemaJSON []byte

const schemaURL = "https://comfy-image.dev/schema/version-spec-v2.json"

// Problem is one thing wrong with a spec: the JSON path of the field
// ("custom_nodes[2].name", empty for the whole file) and what was expected.
type Problem struct {
	Path string
	Msg  string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// SpecError is a spec that cannot be used; it lists every problem found.
type SpecError struct {
	File     string
	Problems []Problem
}

func (e *SpecError) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("%s: %s", e.File, e.Problems[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems:", e.File, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

var compiledSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(SchemaJSON)))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	return c.Compile(schemaURL)
})

var printer = message.NewPrinter(language.English)

// validateSchema checks the structure against schema.json and turns the
// library's error tree into one problem per failing leaf.
func validateSchema(doc any) []Problem {
	sch, err := compiledSchema()
	if err != nil {
		return []Problem{{Msg: "internal error: schema.json does not compile: " + err.Error()}}
	}
	err = sch.Validate(doc)
	if err == nil {
		return nil
	}
	verr, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return []Problem{{Msg: err.Error()}}
	}
	var out []Problem
	collectLeaves(verr, &out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return dedupe(out)
}

func collectLeaves(e *jsonschema.ValidationError, out *[]Problem) {
	if k, ok := e.ErrorKind.(*kind.PropertyNames); ok {
		// The library reuses its location slice, so e.InstanceLocation of a
		// propertyNames error can name another key; the schema location
		// (#/properties/env/propertyNames) names the object reliably.
		loc := append(objectOf(e.SchemaURL), k.Property)
		*out = append(*out, Problem{jsonPath(loc), patternHint(loc)})
		return
	}
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			collectLeaves(c, out)
		}
		return
	}
	loc := e.InstanceLocation
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			*out = append(*out, Problem{jsonPath(append(loc[:len(loc):len(loc)], p)), "unknown key; expected one of " + knownKeys(loc)})
		}
	case *kind.Required:
		for _, p := range k.Missing {
			*out = append(*out, Problem{jsonPath(append(loc[:len(loc):len(loc)], p)), "missing; this field is required"})
		}
	case *kind.Const:
		*out = append(*out, Problem{jsonPath(loc), fmt.Sprintf("expected %v", k.Want)})
	case *kind.Pattern:
		*out = append(*out, Problem{jsonPath(loc), patternHint(loc)})
	case *kind.Type:
		*out = append(*out, Problem{jsonPath(loc), fmt.Sprintf("expected %s, got %s", strings.Join(k.Want, " or "), k.Got)})
	default:
		*out = append(*out, Problem{jsonPath(loc), e.ErrorKind.LocalizedString(printer)})
	}
}

// objectOf turns a schema location like ...#/properties/env/propertyNames
// into the instance location of the object it checks (["env"]).
func objectOf(schemaURL string) []string {
	_, frag, _ := strings.Cut(schemaURL, "#")
	toks := strings.Split(strings.Trim(frag, "/"), "/")
	var loc []string
	for i := 0; i+1 < len(toks); i++ {
		if toks[i] == "properties" {
			loc = append(loc, toks[i+1])
			i++
		}
	}
	return loc
}

// knownKeys names the keys allowed at a location, for "unknown key" messages.
func knownKeys(loc []string) string {
	keys := map[string]string{
		"":             "schema_version, version_id, comfy, custom_nodes, models, env, options, python",
		"comfy":        "repo, ref, commit",
		"custom_nodes": "repo, ref, commit, name, registry, version",
		"models":       "source, name, target_subdir, sha256",
		"options":      "offline, skip_models",
		"python":       "system_site_packages, requirements, index_urls, overrides, pre",
	}
	if len(loc) == 0 {
		return keys[""]
	}
	return keys[loc[0]]
}

func patternHint(loc []string) string {
	last := ""
	if len(loc) > 0 {
		last = loc[len(loc)-1]
	}
	switch last {
	case "version_id":
		return "expected letters, digits, '.', '_' or '-' (at most 128), starting with a letter or digit"
	case "commit":
		return "expected a lower-case hex commit id (7 to 40 characters)"
	case "sha256":
		return "expected 64 lower-case hex characters"
	case "registry":
		return "expected a Comfy Registry node id (letters, digits, '.', '_', '-')"
	case "version":
		return "expected a version x.y.z (digits), as the registry publishes them"
	}
	if len(loc) == 2 && loc[0] == "env" {
		return "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
	}
	return "does not match the expected pattern"
}

// jsonPath renders instance-location tokens as custom_nodes[2].name; a key
// that is not a plain name is quoted (env["BAD KEY"], env[""]), so the path
// says which key even when it is empty or holds dots or spaces.
var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func jsonPath(tokens []string) string {
	var b strings.Builder
	for i, t := range tokens {
		if _, err := strconv.Atoi(t); err == nil && i > 0 {
			b.WriteString("[" + t + "]")
			continue
		}
		if !plainKey.MatchString(t) {
			b.WriteString(fmt.Sprintf("[%q]", t))
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(t)
	}
	return b.String()
}

func dedupe(ps []Problem) []Problem {
	seen := map[Problem]bool{}
	var out []Problem
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// check runs the semantic rules the schema cannot express.
func (s *Spec) check() []Problem {
	var ps []Problem
	add := func(p, format string, args ...any) { ps = append(ps, Problem{p, fmt.Sprintf(format, args...)}) }

	if msg := checkRepoURL(s.Comfy.Repo); msg != "" {
		add("comfy.repo", "%s", msg)
	}
	nodeAt := map[string]int{}
	for i, n := range s.CustomNodes {
		at := fmt.Sprintf("custom_nodes[%d]", i)
		switch {
		case n.Registry != "" && (n.Repo.Repo != "" || n.Ref != "" || n.Commit != ""):
			add(at, "a node is a git repo (repo, ref, commit) or a registry node (registry, version), not both")
		case n.Registry != "" && n.Submodules != nil:
			add(at+".submodules", "submodules belongs to a git repo node; a registry node's zip has none")
		case n.Registry != "" && n.LFS:
			add(at+".lfs", "lfs belongs to a git repo node; a registry node's zip has no LFS pointers")
		case n.Registry == "" && n.Version != "":
			add(at+".version", "version belongs to a registry node; expected registry (the node id) too, or ref/commit for a git repo")
		case n.Registry == "" && n.Repo.Repo == "":
			add(at+".repo", "missing; expected repo (a git URL) or registry (a Comfy Registry node id)")
		case n.Registry == "":
			if msg := checkRepoURL(n.Repo.Repo); msg != "" {
				add(at+".repo", "%s", msg)
			}
		}
		if msg := checkName(n.Name); msg != "" {
			add(at+".name", "%s", msg)
		}
		if j, dup := nodeAt[n.Name]; dup {
			add(at+".name", "duplicate node name %q (also custom_nodes[%d]); expected a unique name", n.Name, j)
		} else {
			nodeAt[n.Name] = i
		}
	}
	nameAt, destAt := map[string]int{}, map[string]int{}
	for i, m := range s.Models {
		at := fmt.Sprintf("models[%d]", i)
		_, srcErr := ParseSource(m.Source)
		if srcErr != nil {
			add(at+".source", "%v", srcErr)
		}
		if m.Name != "" {
			if msg := checkName(m.Name); msg != "" {
				add(at+".name", "%s", msg)
			} else if j, dup := nameAt[m.Name]; dup {
				add(at+".name", "duplicate model name %q (also models[%d]); expected a unique name", m.Name, j)
			} else {
				nameAt[m.Name] = i
			}
		}
		if msg := checkSubdir(m.TargetSubdir); msg != "" {
			add(at+".target_subdir", "%s", msg)
			continue
		}
		if srcErr != nil {
			continue
		}
		if m.FileName() == "" {
			if src, _ := ParseSource(m.Source); src.Scheme == "civitai" {
				add(at+".name", "a Civitai source names no file; expected the file name to place (e.g. \"name\": \"model.safetensors\"; it also picks that file of the model version when it has several)")
				continue
			}
			add(at+".name", "the source has no file name; expected a name for the file")
			continue
		}
		dest := m.Dest()
		if j, dup := destAt[dest]; dup {
			add(at, "duplicate model destination %s (also models[%d]); expected each file once", dest, j)
		} else {
			destAt[dest] = i
		}
	}
	return append(ps, s.Python.check()...)
}

// check accepts python.requirements and python.overrides lines with the
// same parser that reads the nodes' requirements files.
func (p Python) check() []Problem {
	var ps []Problem
	for i, line := range p.Requirements {
		if _, err := reqfile.Check(line); err != nil {
			ps = append(ps, Problem{fmt.Sprintf("python.requirements[%d]", i), err.Error()})
		}
	}
	names := make([]string, 0, len(p.Overrides))
	for name := range p.Overrides {
		names = append(names, name)
	}
	sort.Strings(names)
	seen := map[string]string{}
	for _, name := range names {
		to := p.Overrides[name]
		at := fmt.Sprintf("python.overrides[%q]", name)
		if other, dup := seen[reqfile.Normalize(name)]; dup {
			ps = append(ps, Problem{at, fmt.Sprintf("names the same distribution as %q; expected one override per distribution", other)})
		}
		seen[reqfile.Normalize(name)] = name
		if to == nil {
			continue
		}
		if _, err := reqfile.Check(*to); err != nil {
			ps = append(ps, Problem{at, err.Error() + "; expected a replacement requirement line, or null to drop it"})
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
	return ps
}

// checkName accepts one plain path element.
func checkName(n string) string {
	switch {
	case n == "" || n == "." || n == "..":
		return fmt.Sprintf("%q: expected a plain name", n)
	case strings.ContainsAny(n, `/\`):
		return fmt.Sprintf("%q: expected a plain name without '/'", n)
	case strings.ContainsRune(n, 0):
		return "expected a plain name without NUL bytes"
	case strings.EqualFold(n, ".git"):
		// A folder named .git is git's, in any case (the checkout refuses
		// it inside trees for the same reason).
		return fmt.Sprintf("%q: expected a name other than .git", n)
	}
	return ""
}

// checkSubdir accepts a relative path that stays inside MODELS_DIR.
func checkSubdir(d string) string {
	if strings.HasPrefix(d, "/") || strings.HasPrefix(d, `\`) {
		return fmt.Sprintf("%q: expected a relative folder under MODELS_DIR, not an absolute path", d)
	}
	if strings.ContainsRune(d, 0) || strings.Contains(d, `\`) {
		return fmt.Sprintf("%q: expected a folder name using '/' only", d)
	}
	for _, el := range strings.Split(d, "/") {
		if el == ".." {
			return fmt.Sprintf("%q: expected a folder inside MODELS_DIR; '..' would leave it", d)
		}
		if el == "" || el == "." {
			return fmt.Sprintf("%q: expected folder names separated by single '/'", d)
		}
	}
	return ""
}

var scpLike = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/]`)

// CheckRepoURL says what is wrong with a git URL ("" when it is one the
// cache can mirror): the rule for a spec's repos and for submodule URLs.
func CheckRepoURL(repo string) string { return checkRepoURL(repo) }

// checkRepoURL accepts the git URL forms the cache can mirror.
func checkRepoURL(repo string) string {
	if scpLike.MatchString(repo) {
		return ""
	}
	u, err := repourl.Parse(repo)
	if err != nil {
		return fmt.Sprintf("%q: expected a git URL (https://, http://, ssh://, git:// or file://)", repourl.Redact(repo))
	}
	if u.User != nil && u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "ssh" {
		return fmt.Sprintf("%q: credentials in a %s:// URL; expected them only in https:// (a token: https://x-access-token:${GH_TOKEN}@host/org/repo)", repourl.Redact(repo), u.Scheme)
	}
	switch u.Scheme {
	case "https", "http", "ssh", "git":
		if u.Host == "" || strings.Trim(u.Path, "/") == "" {
			return fmt.Sprintf("%q: expected a host and a repository path", repo)
		}
	case "file":
		if !strings.HasPrefix(u.Path, "/") {
			return fmt.Sprintf("%q: expected file:///absolute/path", repo)
		}
	default:
		return fmt.Sprintf("%q: expected a git URL (https://, http://, ssh://, git:// or file://)", repo)
	}
	for _, el := range strings.Split(u.Path, "/") {
		if el == ".." {
			return fmt.Sprintf("%q: expected a repository path without '..'", repo)
		}
	}
	return ""
}

// Source is a parsed model source.
type Source struct {
	Scheme string // hf, https, http or file
	// For hf: Owner/Repo, Path inside the repository and Revision ("main" if unset).
	Owner, Repo, Revision string
	// Path is the path in the HF repository, the URL path, or the local file.
	Path string
	URL  *url.URL
	// ModelVersionID is a Civitai model version (civitai://<id> or a
	// civitai.com download URL); its file name is the model's name.
	ModelVersionID string
}

var civitaiDownload = regexp.MustCompile(`^/api/download/models/([0-9]+)/?$`)

// civitaiSource recognizes civitai://<model-version-id> and Civitai's
// download URLs (https://civitai.com/api/download/models/<id>).
func civitaiSource(s string, u *url.URL) (Source, bool, error) {
	switch {
	case u.Scheme == "civitai":
		id := strings.Trim(u.Host+u.Path, "/")
		if id == "" || strings.Trim(id, "0123456789") != "" || u.RawQuery != "" {
			return Source{}, true, fmt.Errorf("%q: expected civitai://<model-version-id> (digits only)", s)
		}
		return Source{Scheme: "civitai", ModelVersionID: id, URL: u}, true, nil
	case (u.Scheme == "https" || u.Scheme == "http") && (u.Host == "civitai.com" || u.Host == "www.civitai.com"):
		if m := civitaiDownload.FindStringSubmatch(u.Path); m != nil {
			if u.Query().Has("token") || u.User != nil {
				return Source{}, true, fmt.Errorf("%q: a token in the URL would be written to the lock; expected the URL without it and the token in CIVITAI_API_TOKEN", repourl.Redact(s))
			}
			return Source{Scheme: "civitai", ModelVersionID: m[1], URL: u}, true, nil
		}
	}
	return Source{}, false, nil
}

// ParseSource parses hf://owner/repo/path[@rev], civitai://<id>, http(s):// and file:// sources.
func ParseSource(s string) (Source, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return Source{}, fmt.Errorf("%q: expected hf://owner/repo/path[@revision], civitai://<model-version-id>, https://, http:// or file:// URL", s)
	}
	if src, ok, err := civitaiSource(s, u); ok {
		return src, err
	}
	switch u.Scheme {
	case "hf":
		rest := strings.Trim(u.Host+u.Path, "/")
		rev := "main"
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			rest, rev = rest[:i], rest[i+1:]
		}
		parts := strings.SplitN(rest, "/", 3)
		if len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" || rev == "" {
			return Source{}, fmt.Errorf("%q: expected hf://owner/repo/path/in/repo[@revision]", s)
		}
		if hasDotDot(parts[2]) {
			return Source{}, fmt.Errorf("%q: expected a path inside the repository, without '..'", s)
		}
		return Source{Scheme: "hf", Owner: parts[0], Repo: parts[1], Path: parts[2], Revision: rev, URL: u}, nil
	case "https", "http":
		if u.Host == "" {
			return Source{}, fmt.Errorf("%q: expected a URL with a host", s)
		}
		return Source{Scheme: u.Scheme, Path: u.Path, URL: u}, nil
	case "file":
		if !strings.HasPrefix(u.Path, "/") || u.Host != "" {
			return Source{}, fmt.Errorf("%q: expected file:///absolute/path", s)
		}
		return Source{Scheme: "file", Path: u.Path, URL: u}, nil
	}
	return Source{}, fmt.Errorf("%q: unsupported scheme %q; expected hf://, civitai://, https://, http:// or file://", s, u.Scheme)
}

func hasDotDot(p string) bool {
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// SecretRefs lists the caller's variables a spec's env refers to (${VAR}).
func (s *Spec) SecretRefs() map[string][]string {
	refs := map[string][]string{}
	for k, v := range s.Env {
		for _, m := range envRef.FindAllStringSubmatch(v, -1) {
			refs[k] = append(refs[k], m[1])
		}
	}
	return refs
}

func (s *Spec) envWarnings(lookupEnv func(string) (string, bool)) []string {
	var ws []string
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	refs := s.SecretRefs()
	for i, r := range s.repos() {
		for _, v := range repourl.Refs(r) {
			if _, ok := lookupEnv(v); !ok {
				ws = append(ws, fmt.Sprintf("%s: %s takes its credentials from ${%s}, which is not set; fetching it will fail", s.File, repoField(i), v))
			}
		}
	}
	for _, k := range keys {
		for _, v := range refs[k] {
			if _, ok := lookupEnv(v); !ok {
				ws = append(ws, fmt.Sprintf("%s: env.%s refers to ${%s}, which is not set; requests that need it will fail (public models need none)", s.File, k, v))
			}
		}
	}
	return ws
}

// repos lists the git URLs of the spec: the core, then each node's.
func (s *Spec) repos() []string {
	out := []string{s.Comfy.Repo}
	for _, n := range s.CustomNodes {
		out = append(out, n.Repo.Repo)
	}
	return out
}

func repoField(i int) string {
	if i == 0 {
		return "comfy.repo"
	}
	return fmt.Sprintf("custom_nodes[%d].repo", i-1)
}

// ResolveEnv expands the spec's env with the caller's environment. Values
// that referred to the caller's environment are secrets: the second map says
// which keys they are, so callers can keep them out of files and logs.
func (s *Spec) ResolveEnv(lookupEnv func(string) (string, bool)) (values map[string]string, secret map[string]bool) {
	values, secret = map[string]string{}, map[string]bool{}
	for k, v := range s.Env {
		isSecret := false
		values[k] = envRef.ReplaceAllStringFunc(v, func(ref string) string {
			isSecret = true
			val, _ := lookupEnv(envRef.FindStringSubmatch(ref)[1])
			return val
		})
		secret[k] = isSecret
	}
	return values, secret
}
