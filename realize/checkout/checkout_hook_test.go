package checkout

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// The checks run before anything is written: a hook called between them
// and the first write lets the caller record pending work only then.
func TestBeforeWriteRunsOnlyAfterTheChecks(t *testing.T) {
	src, r := linkRepo(t)
	c1 := src.Commit("one", map[string]string{"a.py": "a\n"})
	c2 := src.Commit("two", map[string]string{"a.py": "a2\n"})
	dir := filepath.Join(testsupport.TempDir(t), "node")
	st1, err := CheckoutTree(r, c1, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "a.py"), []byte("edited\n"), 0o644)
	called := false
	hook := BeforeWrite(func() error { called = true; return nil })
	var mod *ModifiedError
	if _, err := CheckoutTree(r, c2, dir, st1, false, hook); !errors.As(err, &mod) {
		t.Fatalf("error %v", err)
	}
	if called {
		t.Fatal("the hook ran although the checkout was refused")
	}
	if _, err := CheckoutTree(r, c2, dir, st1, true, hook); err != nil || !called {
		t.Fatalf("--force: %v, hook called %v", err, called)
	}
	// A hook that fails stops the checkout before any write.
	stop := BeforeWrite(func() error { return errors.New("disk full") })
	if _, err := CheckoutTree(r, c1, dir, nil, true, stop); err == nil {
		t.Fatal("the hook's error was dropped")
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "a.py")); string(data) != "a2\n" {
		t.Fatal("a write happened after the hook failed")
	}
}
