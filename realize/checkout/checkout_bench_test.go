package checkout

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/storage/memory"
)

// benchTree is a node-sized tree: 40 folders of 50 files (2,000 files),
// the size of ComfyUI's checkout.
func benchTree(b *testing.B) (*git.Repository, string) {
	r, err := git.Init(memory.NewStorage(), nil)
	if err != nil {
		b.Fatal(err)
	}
	var top []craft
	for d := range 40 {
		var files []craft
		for f := range 50 {
			files = append(files, craft{name: fmt.Sprintf("f%03d.py", f), mode: filemode.Regular, content: fmt.Sprintf("# %d/%d\n", d, f)})
		}
		top = append(top, craft{name: fmt.Sprintf("d%03d", d), mode: filemode.Dir, sub: files})
	}
	return r, craftCommit(b, r, top)
}

// BenchmarkCheckoutTree measures a first checkout and the no-op check of a
// finished one (what every realize rerun does per part).
func BenchmarkCheckoutTree(b *testing.B) {
	r, commit := benchTree(b)
	b.Run("first", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := CheckoutTree(r, commit, filepath.Join(b.TempDir(), fmt.Sprint(i)), nil, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		dir := filepath.Join(b.TempDir(), "node")
		st, err := CheckoutTree(r, commit, dir, nil, false)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if ok, err := Unchanged(dir, st); err != nil || !ok {
				b.Fatal("not unchanged", err)
			}
		}
	})
}
