package gitcache

import (
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/comfy-image/comfy-image/internal/repourl"
)

// NoRepoError is a repository URL with no git repository behind it: the
// server answered 404, or answered the ref listing with nothing (a web
// server that is no git server). The URL came from the spec, so it is bad
// input (exit code 2); Repo is shown without credentials.
type NoRepoError struct {
	Repo string // redacted
	Why  string
}

func (e *NoRepoError) Error() string {
	return fmt.Sprintf("repo %s: list refs: %s; check the repository URL", e.Repo, e.Why)
}

// BadInput marks the error as the spec's fault (exit code 2).
func (e *NoRepoError) BadInput() bool { return true }

// listError names what a failed ref listing means. go-git maps an HTTP
// 404 to ErrRepositoryNotFound and reads an empty 200 answer as
// packp.ErrEmptyInput ("empty input", which said nothing to a user).
func listError(err error, repo string) error {
	shown := repourl.Redact(repo)
	switch {
	case errors.Is(err, transport.ErrRepositoryNotFound) && isHTTP(repo):
		return &NoRepoError{Repo: shown, Why: "repository not found (HTTP 404)"}
	case errors.Is(err, packp.ErrEmptyInput) && isHTTP(repo):
		return &NoRepoError{Repo: shown, Why: "not a git repository (HTTP 200 with an empty answer to the ref listing)"}
	}
	return fmt.Errorf("repo %s: list refs: %s%s", shown, redactErr(err, repo), authHint(err, repo))
}

func isHTTP(repo string) bool {
	u, err := repourl.Parse(repo)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https")
}
