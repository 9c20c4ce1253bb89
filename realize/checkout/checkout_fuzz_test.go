package checkout

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/storage/memory"
)

// fuzzBytes hands out the fuzzer's bytes one choice at a time (zero once
// they run out).
type fuzzBytes []byte

func (b *fuzzBytes) pick(n int) int {
	if len(*b) == 0 {
		return 0
	}
	v := int((*b)[0])
	*b = (*b)[1:]
	return v % n
}

// Names and link targets a hostile or broken repository would use.
var fuzzNames = []string{"a", "b", "sub", "x", "lib", "..", ".", ".git", ".GIT", "a/b", "sub/x", "", "a\x00b", "...", ".gitx", "über", "../sentinel"}

func fuzzTargets(sentinel string) []string {
	return []string{"a", "sub", ".", "..", "../..", "../../sentinel", "../../sentinel/x", sentinel, filepath.Join(sentinel, "x"), "sub/x", "lib/../..", "/", ""}
}

func fuzzTree(b *fuzzBytes, targets []string, depth int) []craft {
	n := b.pick(5)
	out := make([]craft, 0, n)
	for range n {
		name := fuzzNames[b.pick(len(fuzzNames))]
		switch b.pick(5) {
		case 0:
			out = append(out, craft{name: name, mode: filemode.Regular, content: "one\n"})
		case 1:
			out = append(out, craft{name: name, mode: filemode.Executable, content: "#!/bin/sh\n"})
		case 2:
			out = append(out, craft{name: name, mode: filemode.Symlink, content: targets[b.pick(len(targets))]})
		case 3:
			if depth < 3 {
				out = append(out, craft{name: name, mode: filemode.Dir, sub: fuzzTree(b, targets, depth+1)})
			}
		default:
			out = append(out, craft{name: name, mode: filemode.Regular, content: "two\n"})
		}
	}
	return out
}

// FuzzCheckoutTree checks out random trees (links, duplicates, odd names)
// one after the other into a folder of a sandbox, with what a user might
// leave between runs: never a panic, never a change outside the folder.
func FuzzCheckoutTree(f *testing.F) {
	f.Add([]byte{2, 2, 2, 7, 3, 2, 0, 3, 0, 1, 2, 2, 7})
	f.Add([]byte{1, 3, 5, 1, 0, 3, 0, 2, 5, 2, 2, 1, 1})
	f.Add([]byte{2, 2, 2, 8, 3, 2, 0, 0, 1, 4, 3, 0, 1, 4, 2, 1})
	f.Add([]byte{3, 3, 2, 2, 5, 4, 2, 0, 2, 3, 7, 0, 1, 3, 2, 4, 4, 6, 9})
	f.Add([]byte{2, 9, 0, 2, 9, 2, 4, 1, 2, 4, 3, 1, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		sandbox := t.TempDir()
		sentinel := filepath.Join(sandbox, "sentinel")
		os.MkdirAll(filepath.Join(sentinel, "d"), 0o755)
		os.WriteFile(filepath.Join(sentinel, "x"), []byte("sentinel\n"), 0o644)
		os.WriteFile(filepath.Join(sentinel, "d", "y"), []byte("sentinel y\n"), 0o644)
		os.MkdirAll(filepath.Join(sandbox, "target"), 0o755)
		os.WriteFile(filepath.Join(sandbox, "target", "sibling"), []byte("a sibling\n"), 0o644)
		dir := filepath.Join(sandbox, "target", "node")
		outside := func() map[string]string {
			st := dirState(t, sandbox)
			for p := range st {
				if p == "target/node" || strings.HasPrefix(p, "target/node/") {
					delete(st, p)
				}
			}
			return st
		}
		before := outside()

		r, err := git.Init(memory.NewStorage(), nil)
		if err != nil {
			t.Fatal(err)
		}
		b := fuzzBytes(data)
		targets := fuzzTargets(sentinel)
		c1 := craftCommit(t, r, fuzzTree(&b, targets, 0))
		c2 := craftCommit(t, r, fuzzTree(&b, targets, 0))
		CommitFiles(r, c1)
		CommitFiles(r, c2)

		var state *Checkout
		for i, commit := range []string{c1, c2, c1} {
			// What a user (or a killed run) may leave between runs.
			switch b.pick(6) {
			case 1:
				os.Symlink(sentinel, filepath.Join(dir, fuzzNames[b.pick(5)]))
			case 2:
				os.WriteFile(filepath.Join(dir, fuzzNames[b.pick(5)]), []byte("mine\n"), 0o644)
			case 3:
				os.Symlink("../../sentinel", filepath.Join(dir, "sub"))
			}
			next, err := CheckoutTree(r, commit, dir, state, b.pick(2) == 1)
			if after := outside(); !maps.Equal(after, before) {
				t.Fatalf("checkout %d of %s changed the sandbox outside the folder:\nbefore %v\nafter  %v", i, commit, before, after)
			}
			if err != nil {
				continue
			}
			if ok, err := Unchanged(dir, next); err != nil || !ok {
				t.Fatalf("checkout %d: the folder does not hold what the checkout recorded (%v)", i, err)
			}
			state = next
		}
	})
}
