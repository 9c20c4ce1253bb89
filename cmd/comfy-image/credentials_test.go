package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// A private node repository named with credentials in its URL is locked
// and fetched again, yet the token is in no file of the cache (the mirror's
// config included) and the lock holds the URL without it.
func TestRepoCredentialsStayInMemory(t *testing.T) {
	token := testsupport.Secret() // the sweep's sentinel under make sweep
	p := newProject(t)
	private := testsupport.NewGitServer(t)
	private.RequireBasicAuth("someone", token)
	r := private.NewRepo(t, "someone/PrivateNode")
	r.Commit("init", map[string]string{"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"})
	withToken := strings.Replace(private.RepoURL("someone/PrivateNode"), "http://", "http://someone:"+token+"@", 1)
	p.writeSpec(t, `, {"repo": "`+withToken+`", "name": "PrivateNode"}`)
	testsupport.SecretInput(t, filepath.Join(p.dir, "versions", "demo.json"))
	for i := 0; i < 2; i++ { // clone, then fetch into the existing mirror
		if res := p.run(t, "lock", "--version-id", "demo"); res.Code != 0 {
			t.Fatalf("lock %d: exit %d\n%s", i, res.Code, res.Stderr)
		} else if strings.Contains(res.Stdout+res.Stderr, token) {
			t.Fatalf("the token is in the output:\n%s%s", res.Stdout, res.Stderr)
		}
		r.Commit("more", map[string]string{"more.py": "x = 1\n"})
	}
	l := p.lock(t)
	if got, want := l.CustomNodes[2].Commit, r.RevParse("HEAD~1"); got != want {
		t.Errorf("locked commit %s, want %s", got, want)
	}
	if got, want := l.CustomNodes[2].Repo, private.RepoURL("someone/PrivateNode"); got != want {
		t.Errorf("locked repo %q, want the URL without credentials %q", got, want)
	}
	filepath.WalkDir(p.cache, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if data, _ := os.ReadFile(path); bytes.Contains(data, []byte(token)) {
			t.Errorf("%s holds the token", path)
		}
		return nil
	})
	data, _ := os.ReadFile(filepath.Join(p.dir, "versions", "demo.json"))
	if !bytes.Contains(data, []byte(token)) {
		t.Fatal("the test's spec lost its token")
	}
}
