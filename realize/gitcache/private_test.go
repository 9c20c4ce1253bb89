package gitcache_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/gitcache"
)

var sentinelToken = testsupport.Secret() // the sentinel sweep's secret under make sweep

// privateRepo is a repository served only with user "x-access-token" and
// the sentinel token, as GitHub serves a private repository.
func privateRepo(t *testing.T) (url string, commit string) {
	srv := testsupport.NewGitServer(t)
	srv.RequireBasicAuth("x-access-token", sentinelToken)
	r := srv.NewRepo(t, "org/private")
	commit = r.Commit("one", map[string]string{"a.py": "one"})
	return srv.RepoURL("org/private"), commit
}

func withVarToken(url string) string {
	return strings.Replace(url, "http://", "http://x-access-token:${GH_TEST_TOKEN}@", 1)
}

func env(vals map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vals[k]; return v, ok }
}

// Issue 11: a token from the environment (${VAR} in the URL) is expanded
// in memory only: the mirror on disk never holds it.
func TestTokenFromEnvironmentStaysInMemory(t *testing.T) {
	url, commit := privateRepo(t)
	c := gitcache.New(testsupport.TempDir(t))
	c.LookupEnv = env(map[string]string{"GH_TEST_TOKEN": sentinelToken})
	res, err := c.Resolve(context.Background(), withVarToken(url), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit != commit {
		t.Fatalf("resolved %s, want %s", res.Commit, commit)
	}
	filepath.WalkDir(c.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte(sentinelToken)) || bytes.Contains(data, []byte("GH_TEST_TOKEN")) {
			t.Errorf("%s holds the token or its variable", p)
		}
		return nil
	})
	dir, _ := c.MirrorPath(withVarToken(url))
	if want, _ := c.MirrorPath(url); dir != want {
		t.Fatalf("mirror %s, want the one of the URL without credentials %s", dir, want)
	}
}

// A refused or missing credential names the variable to set, and never
// the token.
func TestRefusedCredentialNamesTheVariable(t *testing.T) {
	url, _ := privateRepo(t)
	for _, tc := range []struct {
		name string
		repo string
		env  map[string]string
		want []string
	}{
		{"wrong token", withVarToken(url), map[string]string{"GH_TEST_TOKEN": "ghp_wrong"}, []string{"refused", "set GH_TEST_TOKEN"}},
		{"unset variable", withVarToken(url), nil, []string{"${GH_TEST_TOKEN}", "not set", "set GH_TEST_TOKEN"}},
		{"no credentials", url, nil, []string{"private repository", "${GH_TOKEN}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := gitcache.New(testsupport.TempDir(t))
			c.LookupEnv = env(tc.env)
			_, err := c.Resolve(context.Background(), tc.repo, "", "")
			assertErr(t, err, tc.want...)
			if strings.Contains(err.Error(), sentinelToken) || strings.Contains(err.Error(), "ghp_wrong") {
				t.Fatalf("the error shows a token: %v", err)
			}
		})
	}
}

// ssh repositories take the agent or a key file; without either the
// error says what to set.
func TestSSHNeedsAnAgentOrAKeyFile(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv(gitcache.SSHKeyEnv, "")
	for _, repo := range []string{"git@github.com:org/private.git", "ssh://git@github.com/org/private.git"} {
		c := gitcache.New(testsupport.TempDir(t))
		_, err := c.Resolve(context.Background(), repo, "", "")
		assertErr(t, err, "SSH_AUTH_SOCK", gitcache.SSHKeyEnv, "github.com")
		if dir, _ := c.MirrorPath(repo); !strings.HasSuffix(dir, filepath.Join("github.com", "org", "private.git")) {
			t.Errorf("%s: mirror %s", repo, dir)
		}
	}
	bad := filepath.Join(testsupport.TempDir(t), "id_ed25519")
	os.WriteFile(bad, []byte("not a key\n"), 0o600)
	t.Setenv(gitcache.SSHKeyEnv, bad)
	_, err := gitcache.New(testsupport.TempDir(t)).Resolve(context.Background(), "git@github.com:org/private.git", "", "")
	assertErr(t, err, bad, gitcache.SSHKeyEnv)
}
