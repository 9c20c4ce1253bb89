package layers_test

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers/plan"
)

// addNode inserts a node entry at the head of the fixture spec's nodes.
func addNode(t *testing.T, v *testsupport.Version, node string) {
	t.Helper()
	data, err := os.ReadFile(v.SpecFile)
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(string(data), `"custom_nodes": [`, `"custom_nodes": [`+node+",", 1)
	if err := os.WriteFile(v.SpecFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
}

// layerTree lists a layer's entries below prefix: type, mode and content.
func layerTree(t *testing.T, l interface {
	Uncompressed() (io.ReadCloser, error)
}, prefix string) map[string]string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		rel, ok := strings.CutPrefix(strings.TrimSuffix(h.Name, "/"), prefix+"/")
		if !ok {
			continue
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			out[rel] = "link -> " + h.Linkname
		case tar.TypeDir:
			out[rel] = fmt.Sprintf("dir %v", fs.FileMode(h.Mode).Perm())
		case tar.TypeReg:
			data, _ := io.ReadAll(tr)
			out[rel] = fmt.Sprintf("file %v %q", fs.FileMode(h.Mode).Perm(), data)
		default:
			out[rel] = fmt.Sprintf("type %c", h.Typeflag)
		}
	}
}

// Issue 11: a node's layer holds the tree git clone --recurse-submodules
// gives (submodules nested two deep, relative URLs, links, modes, odd
// names); with "submodules": false, the one plain git clone gives.
func TestNodeLayerEqualsGitCloneWithSubmodules(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	for _, recurse := range []bool{true, false} {
		t.Run(fmt.Sprintf("submodules=%v", recurse), func(t *testing.T) {
			v := testsupport.NewVersion(t)
			repos := testsupport.NewNestedRepos(t, filepath.Join(v.Dir, "repos", "nested"))
			addNode(t, v, fmt.Sprintf(`{"repo": %q, "name": "usdu", "submodules": %v}`, repos.Node.FileURL(), recurse))
			res := build(t, v, testsupport.SyntheticBase(t), testsupport.TempDir(t), nil)
			var layer *plan.Part
			for i, p := range res.Parts {
				if p.Kind == "node" && p.Name == "usdu" {
					layer = &res.Parts[i]
				}
			}
			if layer == nil {
				t.Fatalf("no layer for node usdu in %v", res.Parts)
			}
			ref := filepath.Join(testsupport.TempDir(t), "clone")
			testsupport.CloneRecursive(t, repos.Node.FileURL(), ref, recurse)
			want := testsupport.TreeOf(t, ref)
			if recurse {
				if _, ok := want["repositories/lib1/deep/lib2/leaf.py"]; !ok {
					t.Fatal("the reference clone lacks the nested submodule")
				}
			}
			if d := testsupport.DiffTrees(want, layerTree(t, layer.Layer, "opt/comfy/custom_nodes/usdu")); d != "" {
				t.Fatalf("the node's layer differs from git clone:\n%s", d)
			}
			if got := res.Lock.CustomNodes[0].Submodules; recurse != (len(got) == 2) {
				t.Fatalf("lock submodules %v", got)
			}
		})
	}
}
