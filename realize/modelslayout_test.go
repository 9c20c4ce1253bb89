package realize

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/realize/checkout"
)

// A core checked out before ComfyUI/models became a link holds the core's
// files there; checking the same commit out Without the folder removes
// them (the fast "unchanged" path is not taken) and keeps a user's file.
func TestCheckoutWithoutRemovesFilesAnEarlierCheckoutWrote(t *testing.T) {
	src := testsupport.NewRepo(t, filepath.Join(testsupport.TempDir(t), "ComfyUI"))
	commit := src.Commit("core", map[string]string{"main.py": "x\n", "models/checkpoints/put_checkpoints_here": "p\n", "models/configs/v1.yaml": "c\n"})
	r, err := git.PlainOpen(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testsupport.TempDir(t), "ComfyUI")
	old, err := checkout.CheckoutTree(r, commit, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "models", "checkpoints", "mine.safetensors"), []byte("user"), 0o644)
	next, err := checkout.CheckoutTree(r, commit, dir, old, false, checkout.Without("models"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"models/checkpoints/put_checkpoints_here", "models/configs/v1.yaml"} {
		if _, ok := next.Files[p]; ok {
			t.Errorf("state still tracks %s", p)
		}
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s still on disk", p)
		}
	}
	if _, ok := next.Files["main.py"]; !ok {
		t.Error("main.py no longer tracked")
	}
	if _, err := os.Stat(filepath.Join(dir, "models", "configs")); err == nil {
		t.Error("emptied folder models/configs left behind")
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "models", "checkpoints", "mine.safetensors")); string(data) != "user" {
		t.Error("the user's file was removed")
	}
	// A checkout into a folder whose models is a link never writes there.
	os.RemoveAll(filepath.Join(dir, "models"))
	elsewhere := testsupport.TempDir(t)
	os.Symlink(elsewhere, filepath.Join(dir, "models"))
	if _, err := checkout.CheckoutTree(r, commit, dir, nil, false, checkout.Without("models")); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("checkout wrote through the models link: %v", entries)
	}
}
