package realize

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/comfy-image/comfy-image/realize/checkout"
)

// CoreModelsDir is ComfyUI's own models folder in its tree. ComfyUI sets
// folder_paths.models_dir to <real folder of folder_paths.py>/models, and
// custom nodes register folders from it (ComfyUI_IPAdapter_plus:
// models/ipadapter) or read it directly (its insightface loader), so it is
// laid out as a link to MODELS_DIR: every model there is where such nodes
// look, whatever the spec lists. The core's tracked files in it (the
// put_*_here placeholders, configs/*.yaml) are placed in MODELS_DIR instead.
const CoreModelsDir = "models"

// coreModelsLink is the link's path below the target.
const coreModelsLink = "ComfyUI/" + CoreModelsDir

// checkoutOptions are the options of the checkout of part key.
func checkoutOptions(key string) []checkout.CheckoutOption {
	if key == "ComfyUI" {
		return []checkout.CheckoutOption{checkout.Without(CoreModelsDir)}
	}
	return nil
}

// coreModelsTracked reports whether an earlier checkout of part key wrote
// files in ComfyUI/models (a target realized before the link): the
// checkout must run to remove them.
func coreModelsTracked(key string, prev *checkout.Checkout) bool {
	if key != "ComfyUI" || prev == nil {
		return false
	}
	for p := range prev.Files {
		if strings.HasPrefix(p, CoreModelsDir+"/") {
			return true
		}
	}
	return false
}

// modelsLinkTarget is what ComfyUI/models points at: relative when
// MODELS_DIR is inside the target (the target works at any mount point),
// else absolute. "" means MODELS_DIR is ComfyUI/models itself.
func (r *realizer) modelsLinkTarget() (string, error) {
	link := filepath.Join(r.target, filepath.FromSlash(coreModelsLink))
	if r.modelsDir == link {
		return "", nil
	}
	if rel, err := filepath.Rel(link, r.modelsDir); err == nil && filepath.IsLocal(rel) {
		return "", &TargetError{Path: r.modelsDir, Reason: "the models folder cannot be inside ComfyUI/models, which is laid out as a link to it"}
	}
	if rel, err := filepath.Rel(r.target, r.modelsDir); err == nil && filepath.IsLocal(rel) {
		return filepath.Join("..", rel), nil
	}
	return r.modelsDir, nil
}

// modelsLayout makes ComfyUI/models a link to MODELS_DIR and places the
// core's own files of that folder in MODELS_DIR where they are missing.
func (r *realizer) modelsLayout(ctx context.Context) error {
	want, err := r.modelsLinkTarget()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.modelsDir, 0o755); err != nil {
		return fmt.Errorf("models folder: %w", err)
	}
	if want == "" {
		if err := realDir(r.root, coreModelsLink); err != nil {
			return err
		}
	} else if err := r.linkCoreModels(ctx, want); err != nil {
		return err
	}
	// ComfyUI's placeholders and configs are a convenience: a models
	// folder that cannot take them (read-only) is warned about, and the
	// next run tries again.
	placed, err := r.placeCoreModelFiles(ctx)
	if err != nil {
		r.logf("warning: %v", err)
	}
	msg := fmt.Sprintf("%-28s -> %s", coreModelsLink, want)
	if want == "" {
		msg = fmt.Sprintf("%-28s is the models folder", coreModelsLink)
	}
	if placed > 0 {
		msg += fmt.Sprintf(" (%d of ComfyUI's own files placed there)", placed)
	}
	r.summary = append(r.summary, msg)
	return nil
}

// planModelsLayout shows the link in a dry run.
func (r *realizer) planModelsLayout(w io.Writer) {
	switch to, err := r.modelsLinkTarget(); {
	case err != nil:
		fmt.Fprintf(w, "  REFUSED     %v\n", err)
	case to == "":
		fmt.Fprintf(w, "  folder      %s is the models folder\n", coreModelsLink)
	default:
		fmt.Fprintf(w, "  link        %s -> %s (nodes see every model there); ComfyUI's own files of it placed there where missing\n", coreModelsLink, to)
	}
}

// linkCoreModels makes ComfyUI/models a link to want. A link elsewhere is
// replaced (it holds no data); a folder (a target laid out before the
// link) is replaced only when it holds nothing but the core's own files, so
// a user's models there are never lost: the error says where to move them.
func (r *realizer) linkCoreModels(ctx context.Context, want string) error {
	if err := realDir(r.root, "ComfyUI"); err != nil {
		return err
	}
	fi, err := r.root.Lstat(coreModelsLink)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case fi.Mode()&os.ModeSymlink != 0:
		if cur, _ := r.root.Readlink(coreModelsLink); cur == want {
			return nil
		}
		if err := r.root.Remove(coreModelsLink); err != nil {
			return err
		}
	case fi.IsDir():
		left, err := r.userFilesInCoreModels(ctx)
		if err != nil {
			return err
		}
		if len(left) > 0 {
			if len(left) > 5 {
				left = append(left[:5], "...")
			}
			return &TargetError{Path: filepath.Join(r.target, filepath.FromSlash(coreModelsLink)), Reason: fmt.Sprintf(
				"holds files that are not ComfyUI's (%s); ComfyUI/models is now a link to the models folder %s: move them there",
				strings.Join(left, ", "), r.modelsDir)}
		}
		if err := r.root.RemoveAll(coreModelsLink); err != nil {
			return err
		}
	default:
		return &TargetError{Path: filepath.Join(r.target, filepath.FromSlash(coreModelsLink)), Reason: fmt.Sprintf("is a %s, expected a link to the models folder; move it away", fi.Mode().Type())}
	}
	return r.root.Symlink(want, coreModelsLink)
}

// userFilesInCoreModels lists what is below the folder ComfyUI/models
// that is not one of the core's own files there, unchanged (links too,
// never followed), as paths relative to it.
func (r *realizer) userFilesInCoreModels(ctx context.Context) ([]string, error) {
	core, err := r.coreModelFiles(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	err = fs.WalkDir(r.root.FS(), coreModelsLink, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(p, coreModelsLink+"/")
		if f, ok := core[rel]; ok && d.Type().IsRegular() && f.Link == "" {
			same, err := sameContent(r.root, p, f)
			if err != nil || same {
				return err
			}
		}
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out, err
}

// sameContent compares a file below root with a file of a commit.
func sameContent(root *os.Root, p string, f checkout.TreeFileEntry) (bool, error) {
	have, err := root.ReadFile(p)
	if err != nil || int64(len(have)) != f.Size {
		return false, err
	}
	rc, err := f.Open()
	if err != nil {
		return false, err
	}
	defer rc.Close()
	want, err := io.ReadAll(rc)
	return bytes.Equal(have, want), err
}

// coreModelFiles are the core's tracked files of its models folder, by
// path relative to it.
func (r *realizer) coreModelFiles(ctx context.Context) (map[string]checkout.TreeFileEntry, error) {
	repo, err := checkout.OpenMirror(ctx, r.cache, r.spec.Comfy.Repo, r.lock.Comfy.Commit)
	if err != nil {
		return nil, fmt.Errorf("ComfyUI: %w", err)
	}
	files, err := checkout.CommitFiles(repo, r.lock.Comfy.Commit)
	if err != nil {
		return nil, fmt.Errorf("ComfyUI: %w", err)
	}
	out := map[string]checkout.TreeFileEntry{}
	for _, f := range files {
		if rel, ok := strings.CutPrefix(f.Path, CoreModelsDir+"/"); ok {
			out[rel] = f
		}
	}
	return out, nil
}

// placeCoreModelFiles writes the core's tracked files of its models folder
// into MODELS_DIR where nothing is at their path yet: a file already there
// (the user's or another version's) is kept, and a folder of MODELS_DIR
// that is a link (models on another disk) is not written through. Done
// once per core commit and models folder.
func (r *realizer) placeCoreModelFiles(ctx context.Context) (int, error) {
	mark := r.lock.Comfy.Commit + " " + r.modelsDir
	if r.state.CoreModelFiles == mark {
		return 0, nil
	}
	files, err := r.coreModelFiles(ctx)
	if err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(r.modelsDir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	rels := make([]string, 0, len(files))
	for rel := range files {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	placed := 0
	for _, rel := range rels {
		f := files[rel]
		if f.Link != "" {
			continue
		}
		done, err := placeMissing(root, rel, f)
		if err != nil {
			return placed, fmt.Errorf("place ComfyUI's %s in %s: %w", f.Path, r.modelsDir, err)
		}
		if done {
			placed++
		}
	}
	r.state.CoreModelFiles = mark
	return placed, r.saveState()
}

// placeMissing writes f at rel below root unless something is there or a
// folder on the way is not a real folder; done says whether it wrote.
func placeMissing(root *os.Root, rel string, f checkout.TreeFileEntry) (done bool, err error) {
	dir := path.Dir(rel)
	if dir != "." {
		parts := strings.Split(dir, "/")
		for i := range parts {
			p := strings.Join(parts[:i+1], "/")
			fi, err := root.Lstat(p)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				if err := root.Mkdir(p, 0o755); err != nil {
					return false, err
				}
			case err != nil:
				return false, err
			case !fi.IsDir():
				return false, nil
			}
		}
	}
	if _, err := root.Lstat(rel); !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	rc, err := f.Open()
	if err != nil {
		return false, err
	}
	defer rc.Close()
	tmp := path.Join(dir, ".comfy-image-tmp-"+path.Base(rel))
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|checkout.NoFollow, 0o644)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(out, rc)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		root.Remove(tmp)
		return false, err
	}
	return true, nil
}
