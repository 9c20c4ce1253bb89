package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// TestRealizeCivitaiModel: a civitai:// model is resolved through the API,
// placed under its name, pinned in the lock (URL and sha256, no token), and
// a later realize from the lock needs no API call.
func TestRealizeCivitaiModel(t *testing.T) {
	s := newSite(t)
	c := testsupport.NewCivitaiServer(t)
	lora := randomBytes(t, 80_000)
	sums := c.AddVersion(128713, true,
		testsupport.CivitaiFile{Name: "style.safetensors", Primary: true, Content: lora},
		testsupport.CivitaiFile{Name: "style_fp16.safetensors", Type: "Pruned Model", Content: randomBytes(t, 1000)})
	token := testsupport.Secret()
	c.RequireToken(token)
	s.writeSpec(t, ``, `"models": [{"source": "civitai://128713", "name": "style.safetensors", "target_subdir": "loras"}],`)
	env := s.env("CIVITAI_ENDPOINT="+c.URL, "CIVITAI_API_TOKEN="+token)
	target := filepath.Join(s.dir, "target")
	args := []string{"realize", "--version-id", "demo", "--target", target, "--wheels-dir", s.wheels}

	// Without the token: the error names the variable, nothing is placed.
	failed := testsupport.Run(t, s.dir, s.env("CIVITAI_ENDPOINT="+c.URL, "CIVITAI_API_TOKEN="), args...)
	if failed.Code == 0 || !strings.Contains(failed.Stderr, "CIVITAI_API_TOKEN") {
		t.Fatalf("without token: exit %d\n%s", failed.Code, failed.Stderr)
	}
	res := testsupport.Run(t, s.dir, env, args...)
	if res.Code != 0 {
		t.Fatalf("realize exit %d\n%s", res.Code, res.Stderr)
	}
	if readFile(t, target, "models/loras/style.safetensors") != string(lora) {
		t.Error("the model file differs")
	}
	l := s.lock(t)
	if len(l.Models) != 1 || l.Models[0].SHA256 != sums[0] || l.Models[0].Dest != "loras/style.safetensors" ||
		l.Models[0].URL != c.URL+"/api/download/models/128713?type=Model&format=SafeTensor" {
		t.Errorf("locked models %+v", l.Models)
	}
	for _, r := range c.Requests() {
		if r.Host == "cdn" && r.Authorization != "" {
			t.Errorf("the CDN saw the token: %+v", r)
		}
	}
	// From the lock, in a fresh cache of models: no API call, same file.
	before := len(c.Requests())
	os.RemoveAll(filepath.Join(s.cache, "models"))
	os.RemoveAll(target)
	if res := testsupport.Run(t, s.dir, env, args...); res.Code != 0 {
		t.Fatalf("second realize: %s", res.Stderr)
	}
	for _, r := range c.Requests()[before:] {
		if strings.HasPrefix(r.Path, "/api/v1/") {
			t.Errorf("the API was asked again although the lock pins the file: %+v", r)
		}
	}
	if readFile(t, target, "models/loras/style.safetensors") != string(lora) {
		t.Error("the model file differs after the locked run")
	}
	for _, out := range []string{res.Stdout, res.Stderr, failed.Stderr} {
		if strings.Contains(out, token) {
			t.Error("the token was printed")
		}
	}
	filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !strings.Contains(p, ".venv") {
			if data, _ := os.ReadFile(p); strings.Contains(string(data), token) {
				t.Errorf("the token is in %s", p)
			}
		}
		return nil
	})
}
