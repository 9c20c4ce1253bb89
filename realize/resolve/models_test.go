package resolve_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/resolve"
	"github.com/comfy-image/comfy-image/versions"
)

// `lock --update MODEL` resolves the model again, as a ref: its pin
// (revision, sha256, size) moves to what the branch holds now, asked with
// one HEAD and nothing downloaded; the other models keep their pins, and
// Changes names the old and new sha256 and revision. (It used to drop the
// pin until a realize or build pinned the model again.)
func TestUpdateModelResolvesItAgain(t *testing.T) {
	hf := testsupport.NewHFServer(t)
	hf.Add("Comfy-Org/Wan/split/unet/wan_unet.gguf", []byte("unet 1"))
	vae := hf.Add("Comfy-Org/Wan/split/vae/wan_vae.safetensors", []byte("vae 1"))
	hf.Add("Comfy-Org/Wan/split/clip/clip.safetensors", []byte("clip 1"))
	srv := testsupport.NewGitServer(t)
	core := srv.NewRepo(t, "comfyanonymous/ComfyUI")
	core.Commit("core", map[string]string{"main.py": "\n"})
	pinnedRev := strings.Repeat("a", 40)
	spec := parseSpec(t, fmt.Sprintf(`{"schema_version": 2, "version_id": "demo", "comfy": {"repo": %q}, "models": [
	  {"source": "hf://Comfy-Org/Wan/split/vae/wan_vae.safetensors", "target_subdir": "vae"},
	  {"source": "hf://Comfy-Org/Wan/split/unet/wan_unet.gguf", "name": "unet", "target_subdir": "unet"},
	  {"source": "hf://Comfy-Org/Wan/split/clip/clip.safetensors@%s", "name": "clip", "target_subdir": "clip"}]}`,
		srv.RepoURL("comfyanonymous/ComfyUI"), pinnedRev))
	env := func(k string) (string, bool) {
		if k == "HF_ENDPOINT" {
			return hf.URL, true
		}
		return "", false
	}
	var log bytes.Buffer
	opts := []resolve.Option{resolve.WithCacheDir(testsupport.TempDir(t)), resolve.WithLookupEnv(env), resolve.WithLog(&log)}
	first, _, err := resolve.Resolve(context.Background(), spec, nil, opts...)
	if err != nil || len(first.Models) != 0 {
		t.Fatalf("a first lock pins no model (realize and build do): %+v %v", first.Models, err)
	}
	// Named, a model not pinned yet is pinned.
	old, changes, err := resolve.Resolve(context.Background(), spec, first, append(opts, resolve.WithUpdate("unet", "vae/wan_vae.safetensors"))...)
	if err != nil {
		t.Fatal(err)
	}
	if len(old.Models) != 2 || old.Models[0].Dest != "vae/wan_vae.safetensors" || old.Models[0].SHA256 != vae || old.Models[1].Dest != "unet/wan_unet.gguf" ||
		old.Models[1].Revision != hf.Commit || old.Models[1].Size != int64(len("unet 1")) || len(changes.Lines) != 2 {
		t.Fatalf("pinned %+v, changes %q", old.Models, changes.Lines)
	}
	// A clip pin as realize makes it, for the commit-pinned source.
	clip := versions.LockedModel{Name: "clip", Source: spec.Models[2].Source, Dest: "clip/clip.safetensors", Revision: pinnedRev, Size: 6, SHA256: strings.Repeat("c", 64)}
	old.Models = append(old.Models, clip)

	// main moves: new content for the unet (and the vae).
	unet := hf.Add("Comfy-Org/Wan/split/unet/wan_unet.gguf", []byte("unet 2, longer"))
	hf.Add("Comfy-Org/Wan/split/vae/wan_vae.safetensors", []byte("vae 2"))
	hf.Commit = strings.Repeat("b", 40)
	seen := len(hf.Requests())
	l, changes, err := resolve.Resolve(context.Background(), spec, old, append(opts, resolve.WithUpdate("unet", "clip"))...)
	if err != nil {
		t.Fatal(err)
	}
	want := []versions.LockedModel{old.Models[0],
		{Name: "unet", Source: spec.Models[1].Source, Dest: "unet/wan_unet.gguf", Revision: hf.Commit, Size: int64(len("unet 2, longer")), SHA256: unet},
		clip}
	if fmt.Sprint(l.Models) != fmt.Sprint(want) {
		t.Fatalf("--update unet clip: models\n%+v\nwant\n%+v", l.Models, want)
	}
	wantLine := fmt.Sprintf("model unet/wan_unet.gguf: sha256 %s -> %s, revision %s -> %s", old.Models[1].SHA256, unet, old.Models[1].Revision, hf.Commit)
	if fmt.Sprint(changes.Lines) != fmt.Sprint([]string{wantLine}) {
		t.Errorf("changes %q, want %q", changes.Lines, wantLine)
	}
	if !strings.Contains(log.String(), "model clip/clip.safetensors: its content is pinned") {
		t.Errorf("the kept pin of a named commit-pinned model is not said:\n%s", log.String())
	}
	hub := 0
	for _, r := range hf.Requests()[seen:] {
		if r.Host == "hub" {
			hub++
		}
		if r.Method != "HEAD" || (r.Host == "hub" && !strings.Contains(r.Path, "wan_unet.gguf")) {
			t.Errorf("request %+v: --update unet asks the hub about the unet alone and downloads nothing", r)
		}
	}
	if hub != 1 {
		t.Errorf("%d requests to the hub, want one HEAD", hub)
	}

	// A hub that cannot answer for a named model fails the resolution,
	// naming it; unnamed, the pin is kept with a warning.
	hf.Close()
	if _, _, err := resolve.Resolve(context.Background(), spec, l, append(opts, resolve.WithUpdate("unet"))...); err == nil || !strings.Contains(err.Error(), "--update unet") {
		t.Errorf("--update unet with the hub down: %v", err)
	}
	log.Reset()
	kept, _, err := resolve.Resolve(context.Background(), spec, l, opts...)
	if err != nil || fmt.Sprint(kept.Models) != fmt.Sprint(l.Models) || !strings.Contains(log.String(), "warning: model unet/wan_unet.gguf: cannot ask for its current revision") {
		t.Errorf("hub down, nothing named: %v, models %+v\n%s", err, kept.Models, log.String())
	}
}

// A file:// model the spec does not pin keeps the lock's pin on a plain
// lock (the file is read by realize and build, which refuse an edited
// one); `lock --update` naming it reads the file again: the way to take
// an edited file, shown as a change of its sha256.
func TestUpdateReadsAnEditedFileModelAgain(t *testing.T) {
	spec, file := fileModelSpec(t, "")
	opts := []resolve.Option{resolve.WithCacheDir(testsupport.TempDir(t)), resolve.WithLog(io.Discard)}
	first := sha256.Sum256([]byte("first weights"))
	old, _, err := resolve.Resolve(context.Background(), spec, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	old.Models = []versions.LockedModel{{Name: spec.Models[0].Name, Source: spec.Models[0].Source, Dest: "loras/mine.safetensors", URL: spec.Models[0].Source, Size: 13, SHA256: hex.EncodeToString(first[:])}}
	if err := os.WriteFile(file, []byte("second weights, retrained"), 0o644); err != nil {
		t.Fatal(err)
	}
	kept, changes, err := resolve.Resolve(context.Background(), spec, old, opts...)
	if err != nil || kept.Models[0].SHA256 != old.Models[0].SHA256 || len(changes.Lines) != 0 {
		t.Fatalf("a plain lock moved the file's pin: %+v, %q, %v", kept.Models, changes.Lines, err)
	}
	second := sha256.Sum256([]byte("second weights, retrained"))
	moved, changes, err := resolve.Resolve(context.Background(), spec, old, append(opts, resolve.WithUpdate("loras/mine.safetensors"))...)
	want := fmt.Sprintf("model loras/mine.safetensors: sha256 %x -> %x", first, second)
	if err != nil || moved.Models[0].SHA256 != hex.EncodeToString(second[:]) || moved.Models[0].Size != 25 || len(changes.Lines) != 1 || changes.Lines[0] != want {
		t.Fatalf("lock --update of an edited file model: %+v, %q, %v; want %q", moved.Models, changes.Lines, err, want)
	}
}

// Reading a local file asks no server: `lock --offline --update MODEL`
// of a file:// model takes its new bytes as online (it used to keep the
// old pin and say nothing, so realize and build refused the file again
// pointing at the same command). A named hub model offline is an error,
// not a silent no-op.
func TestOfflineUpdateReadsAnEditedFileModel(t *testing.T) {
	spec, file := fileModelSpec(t, `, {"source": "hf://o/r/m.safetensors", "name": "hub", "target_subdir": "vae"}`)
	opts := []resolve.Option{resolve.WithCacheDir(testsupport.TempDir(t)), resolve.WithLog(io.Discard)}
	old, _, err := resolve.Resolve(context.Background(), spec, nil, append(opts, resolve.WithoutModels(true))...)
	if err != nil {
		t.Fatal(err)
	}
	first := sha256.Sum256([]byte("first weights"))
	old.Models = []versions.LockedModel{{Name: spec.Models[0].Name, Source: spec.Models[0].Source, Dest: "loras/mine.safetensors", URL: spec.Models[0].Source, Size: 13, SHA256: hex.EncodeToString(first[:])}}
	if err := os.WriteFile(file, []byte("second weights, retrained"), 0o644); err != nil {
		t.Fatal(err)
	}
	offline := append(opts, resolve.WithOffline(true))
	second := sha256.Sum256([]byte("second weights, retrained"))
	moved, _, err := resolve.Resolve(context.Background(), spec, old, append(offline, resolve.WithUpdate("loras/mine.safetensors"))...)
	if err != nil || len(moved.Models) == 0 || moved.Models[0].SHA256 != hex.EncodeToString(second[:]) {
		t.Fatalf("lock --offline --update of an edited file model: %+v, %v; want sha256 %x", moved, err, second)
	}
	if _, _, err := resolve.Resolve(context.Background(), spec, old, append(offline, resolve.WithUpdate("hub"))...); err == nil || !strings.Contains(err.Error(), "hub") || !strings.Contains(err.Error(), "offline") {
		t.Fatalf("lock --offline --update of a hub model: %v; want an error naming it and --offline", err)
	}
}

// fileModelSpec is a spec with a core on a git server and a file:// model
// (loras/mine.safetensors, holding "first weights"), then the models in
// more (JSON, each after a comma): the spec and the model's file.
func fileModelSpec(t *testing.T, more string) (*versions.Spec, string) {
	t.Helper()
	srv := testsupport.NewGitServer(t)
	core := srv.NewRepo(t, "comfyanonymous/ComfyUI")
	core.Commit("core", map[string]string{"main.py": "\n"})
	file := filepath.Join(testsupport.TempDir(t), "mine.safetensors")
	if err := os.WriteFile(file, []byte("first weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	return parseSpec(t, fmt.Sprintf(`{"schema_version": 2, "version_id": "demo", "comfy": {"repo": %q}, "models": [
	  {"source": %q, "target_subdir": "loras"}%s]}`, srv.RepoURL("comfyanonymous/ComfyUI"), "file://"+file, more)), file
}
