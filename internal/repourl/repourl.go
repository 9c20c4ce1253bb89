// Package repourl reads git repository URLs whose credentials may be
// ${VAR} references, expands them in memory only, and redacts credentials
// from URLs before they are written or printed.
package repourl

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// envRef is a ${VAR} reference.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse parses a repo URL whose user info may hold ${VAR}
// references (https://x-access-token:${GH_TOKEN}@host/org/repo): they are
// kept, percent-encoded, in the parsed user info, to be expanded by
// ExpandUserinfo when the credentials are needed and never before.
func Parse(raw string) (*url.URL, error) {
	return url.Parse(escapeUserinfoRefs(raw))
}

// escapeUserinfoRefs percent-encodes the braces of ${VAR} in the user
// info part of raw (braces are not allowed there by net/url).
func escapeUserinfoRefs(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return raw
	}
	ui := strings.NewReplacer("${", "%24%7B", "}", "%7D").Replace(rest[:at])
	return raw[:i+3] + ui + rest[at:]
}

// Refs lists the variables a repo URL's user info refers to.
func Refs(raw string) []string {
	u, err := Parse(raw)
	if err != nil || u.User == nil {
		return nil
	}
	pass, _ := u.User.Password()
	var names []string
	for _, m := range envRef.FindAllStringSubmatch(u.User.Username()+"\x00"+pass, -1) {
		names = append(names, m[1])
	}
	return names
}

// UnsetVarError is a ${VAR} of a repo URL that the environment lacks.
type UnsetVarError struct{ Name, Repo string }

func (e *UnsetVarError) Error() string {
	return fmt.Sprintf("repo %s takes its credentials from ${%s}, which is not set; set %s to a token with read access to it", Redact(e.Repo), e.Name, e.Name)
}

// ExpandUserinfo is the user and password of a repo URL with their ${VAR}
// references expanded from lookup: for the transport, in memory only.
func ExpandUserinfo(u *url.URL, lookup func(string) (string, bool)) (user, pass string, err error) {
	if u.User == nil {
		return "", "", nil
	}
	expand := func(s string) string {
		return envRef.ReplaceAllStringFunc(s, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			v, ok := lookup(name)
			if !ok && err == nil {
				err = &UnsetVarError{Name: name, Repo: u.String()}
			}
			return v
		})
	}
	p, _ := u.User.Password()
	user, pass = expand(u.User.Username()), expand(p)
	return user, pass, err
}

// Redact drops credentials (user:password@) from a URL so it can be
// written to a lock or a log.
func Redact(raw string) string {
	u, err := Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}
