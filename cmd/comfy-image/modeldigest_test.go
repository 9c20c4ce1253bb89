package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// A model layer's digest the cache remembers wrongly (the cache is
// untrusted; a file's bytes can change under an unchanged stamp) is
// streamed unchecked to a registry since 20478fd: the registry refuses it
// (DIGEST_INVALID), the retry reads the checked stream, which forgets
// the digest, and the build digests the files again and pushes a valid
// models image, telling the user. Two such layers failed the push before.
func TestPushOfAModelLayerWithAWrongRememberedDigestRecovers(t *testing.T) {
	v := testsupport.NewVersion(t)
	base := testsupport.SyntheticBase(t)
	cache := filepath.Join(v.Dir, "cache")
	args := []string{"build", "--spec", v.SpecFile, "--base", base, "--wheels-dir", v.Wheels}
	if res := testsupport.Run(t, v.Dir, v.Env(cache), args...); res.Code != 0 {
		t.Fatalf("build: %s", res.Stderr)
	}
	testsupport.ForgeModelLayerDigests(t, cache)
	reg := testsupport.NewRegistry(t)
	ref := reg.Host + "/comfy/demo:v1"
	res := testsupport.Run(t, v.Dir, v.Env(cache), append(args, "--push", ref)...)
	if res.Code != 0 || !strings.Contains(res.Stderr, "packing it again") {
		t.Fatalf("push with a wrong remembered model digest: exit %d\n%s", res.Code, res.Stderr)
	}
	for _, tag := range []string{ref, ref + "-models"} {
		r, _ := name.ParseReference(tag, name.Insecure)
		img, err := remote.Image(r)
		if err != nil {
			t.Fatal(err)
		}
		// Model layers are uncompressed, which validate's layer check
		// (gzip) does not read: those are checked by digest.
		var opts []validate.Option
		if strings.HasSuffix(tag, "-models") {
			opts = append(opts, validate.Fast)
		}
		if err := validate.Image(img, opts...); err != nil {
			t.Errorf("%s is not valid: %v", tag, err)
		}
	}
}
