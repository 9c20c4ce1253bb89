package checkout

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/gofrs/flock"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/versions"
)

// DefaultRegistryURL is the Comfy Registry API; COMFY_REGISTRY_URL overrides
// it as HF_ENDPOINT overrides Hugging Face.
const DefaultRegistryURL = "https://api.comfy.org"

// registryScheme marks the repository of a registry node for OpenMirror:
// comfy-registry://<id>/<version>?sha256=<zip sha256>&url=<zip URL>.
const registryScheme = "comfy-registry"

// Zip limits: a node pack is source code, not a model store.
const (
	maxZipBytes    = 1 << 30
	maxUnpackBytes = 4 << 30
	// A member is read whole (go-git stores blobs from memory), so one
	// member's size bounds the memory an unpack takes.
	maxMemberBytes  = 256 << 20
	maxZipMembers   = 200_000
	registryTimeout = 60 * time.Second
)

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// RegistryBase is the Comfy Registry API in use (COMFY_REGISTRY_URL or
// DefaultRegistryURL).
func RegistryBase() string {
	if u := os.Getenv("COMFY_REGISTRY_URL"); u != "" {
		return strings.TrimRight(u, "/")
	}
	return DefaultRegistryURL
}

var registryClient = &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{
	Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: registryTimeout,
}}

// NodeRepo is the repository OpenMirror reads a locked node from: the
// spec's git URL, or for a registry node the zip the lock pins.
func NodeRepo(n versions.Node, ln versions.LockedNode) string {
	if ln.Registry == "" {
		return n.Repo.Repo
	}
	q := url.Values{"sha256": {ln.SHA256}, "url": {ln.URL}}
	return (&url.URL{Scheme: registryScheme, Host: ln.Registry, Path: "/" + ln.Version, RawQuery: q.Encode()}).String()
}

// UnpackRegistryZip makes sure the cache under cacheDir holds the zip of the
// registry node ln (by sha256; with ln.SHA256 set the zip must match it) and
// a bare repository with one commit of its unpacked tree, and returns the
// commit and the zip's sha256.
func UnpackRegistryZip(ctx context.Context, cacheDir string, ln versions.LockedNode, zipURL string) (commit, sha string, err error) {
	return registryRepo(ctx, registryDir(cacheDir), ln, zipURL)
}

func registryDir(cacheDir string) string { return filepath.Join(cacheDir, "registry") }

// RegistryGet asks the registry (or its storage) for u.
func RegistryGet(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "comfy-image")
	return registryClient.Do(req)
}

// CheckDownloadURL accepts a zip URL from the (untrusted) registry answer
// only over https, or plain http when the registry itself is plain http.
func CheckDownloadURL(base, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	b, berr := url.Parse(base)
	if err != nil || berr != nil || u.Host == "" || !(u.Scheme == "https" || (u.Scheme == "http" && b.Scheme == "http")) {
		return nil, fmt.Errorf("downloadUrl %q: expected an https URL", repourl.Redact(raw))
	}
	return u, nil
}

// registryRepo makes sure the cache holds the node's zip (by sha256) and a
// bare repository with one commit of its unpacked tree, and returns the
// commit and the zip's sha256. With ln.SHA256 set, the zip must match it.
func registryRepo(ctx context.Context, dir string, ln versions.LockedNode, zipURL string) (commit, sha string, err error) {
	if ln.SHA256 != "" && !sha256Pattern.MatchString(ln.SHA256) {
		return "", "", fmt.Errorf("the lock's sha256 %q is not 64 lower-case hex characters; run `comfy-image lock` again", ln.SHA256)
	}
	if err := os.MkdirAll(filepath.Join(dir, "zips"), 0o755); err != nil {
		return "", "", err
	}
	// The lock file is named by a hash: id and version may come from a
	// lock on disk, which must not pick a path.
	key := sha256.Sum256([]byte(ln.Registry + "@" + ln.Version))
	lock := flock.New(filepath.Join(dir, "zips", hex.EncodeToString(key[:8])+".lock"))
	if _, err := lock.TryLockContext(ctx, 100*time.Millisecond); err != nil {
		return "", "", err
	}
	defer lock.Unlock()
	if ln.SHA256 != "" {
		if r, err := git.PlainOpen(filepath.Join(dir, "git", ln.SHA256+".git")); err == nil {
			if ref, err := r.Reference(plumbing.NewBranchReferenceName("main"), true); err == nil {
				return ref.Hash().String(), ln.SHA256, nil
			}
		}
	}
	sha = ln.SHA256
	zipFile := ""
	if sha != "" {
		zipFile = filepath.Join(dir, "zips", sha+".zip")
		if ok, err := fileHasSHA(zipFile, sha); err != nil || !ok {
			zipFile = ""
		}
	}
	if zipFile == "" {
		if zipFile, sha, err = downloadZip(ctx, dir, zipURL, ln.SHA256); err != nil {
			return "", "", err
		}
	}
	repoDir := filepath.Join(dir, "git", sha+".git")
	if r, err := git.PlainOpen(repoDir); err == nil {
		if ref, err := r.Reference(plumbing.NewBranchReferenceName("main"), true); err == nil {
			return ref.Hash().String(), sha, nil
		}
	}
	c, err := unpackToRepo(zipFile, repoDir, ln.Registry, ln.Version, sha)
	if err != nil {
		return "", "", err
	}
	return c, sha, nil
}

func fileHasSHA(file, want string) (bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == want, nil
}

// downloadZip fetches the zip into zips/<sha256>.zip (temp file + rename),
// checking it against want when the lock pins it.
func downloadZip(ctx context.Context, dir, zipURL, want string) (string, string, error) {
	resp, err := RegistryGet(ctx, zipURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", "", fmt.Errorf("download %s: %w", repourl.Redact(zipURL), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("download %s: server answered %s", repourl.Redact(zipURL), resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Join(dir, "zips"), ".download-*")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, maxZipBytes+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", fmt.Errorf("download %s: %w", repourl.Redact(zipURL), err)
	}
	if n > maxZipBytes {
		return "", "", fmt.Errorf("download %s: larger than %d bytes; not a node pack", repourl.Redact(zipURL), int64(maxZipBytes))
	}
	sha := hex.EncodeToString(h.Sum(nil))
	if want != "" && sha != want {
		return "", "", fmt.Errorf("download %s: sha256 %s, the lock pins %s; the zip changed on the server (run `comfy-image lock` to accept it)", repourl.Redact(zipURL), sha, want)
	}
	dest := filepath.Join(dir, "zips", sha+".zip")
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return "", "", err
	}
	return dest, sha, nil
}

// zipEntry is one file of the unpacked tree.
type zipEntry struct {
	mode filemode.FileMode
	hash plumbing.Hash
}

// unpackToRepo checks every member of the zip and writes its tree as one
// commit (fixed author and time: the commit is a function of the zip) into
// a new bare repository at repoDir, built aside and renamed into place.
func unpackToRepo(zipFile, repoDir, id, version, sha string) (string, error) {
	zr, err := zip.OpenReader(zipFile)
	if err != nil {
		return "", fmt.Errorf("zip of %s@%s: %w", id, version, err)
	}
	defer zr.Close()
	if len(zr.File) > maxZipMembers {
		return "", fmt.Errorf("zip of %s@%s: %d members; refusing more than %d", id, version, len(zr.File), maxZipMembers)
	}
	if err := os.MkdirAll(filepath.Dir(repoDir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(repoDir), ".unpack-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	r, err := git.PlainInit(tmp, true)
	if err != nil {
		return "", err
	}
	files := map[string]zipEntry{}
	var total uint64
	for _, f := range zr.File {
		name, skip, err := memberPath(f)
		if err != nil {
			return "", fmt.Errorf("zip of %s@%s: member %q: %w", id, version, f.Name, err)
		}
		if skip {
			continue
		}
		if _, dup := files[name]; dup {
			return "", fmt.Errorf("zip of %s@%s: member %q appears twice", id, version, f.Name)
		}
		total += f.UncompressedSize64
		if total > maxUnpackBytes {
			return "", fmt.Errorf("zip of %s@%s: unpacks to more than %d bytes; refusing it", id, version, int64(maxUnpackBytes))
		}
		e, err := storeMember(r.Storer, f, name)
		if err != nil {
			return "", fmt.Errorf("zip of %s@%s: member %q: %w", id, version, f.Name, err)
		}
		files[name] = e
	}
	tree, err := writeTrees(r.Storer, files)
	if err != nil {
		return "", fmt.Errorf("zip of %s@%s: %w", id, version, err)
	}
	sig := object.Signature{Name: "Comfy Registry", Email: "registry@comfy.org", When: time.Unix(0, 0).UTC()}
	c := &object.Commit{Author: sig, Committer: sig, TreeHash: tree,
		Message: fmt.Sprintf("%s %s\n\nUnpacked from the registry's zip, sha256 %s.\n", id, version, sha)}
	obj := r.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return "", err
	}
	commit, err := r.Storer.SetEncodedObject(obj)
	if err != nil {
		return "", err
	}
	if err := r.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName("main"), commit)); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, repoDir); err != nil {
		if _, serr := os.Stat(repoDir); serr != nil {
			return "", err
		}
	}
	return commit.String(), nil
}

// memberPath checks a zip member's name: relative, no '..', no backslash
// or NUL; directories and .git contents (at any depth) are skipped.
func memberPath(f *zip.File) (string, bool, error) {
	n := f.Name
	switch {
	case n == "" || strings.HasPrefix(n, "/") || (len(n) > 1 && n[1] == ':'):
		return "", false, errors.New("absolute path; expected a path inside the node folder")
	case strings.ContainsAny(n, "\\\x00"):
		return "", false, errors.New("backslash or NUL in the name; expected a plain relative path")
	}
	for _, el := range strings.Split(strings.TrimSuffix(n, "/"), "/") {
		if el == ".." {
			return "", false, errors.New("'..' would leave the node folder")
		}
	}
	clean := path.Clean(n)
	if f.FileInfo().IsDir() || strings.HasSuffix(n, "/") || clean == "." {
		return "", true, nil
	}
	// git never has a .git entry (in any case, at any depth) in a tree and
	// the checkout refuses one: a working copy's nested submodule leaves a
	// lib/.git file, a crafted zip a .GIT/hooks folder.
	for _, el := range strings.Split(clean, "/") {
		if strings.EqualFold(el, ".git") {
			return "", true, nil
		}
	}
	return clean, false, nil
}

// storeMember writes one member as a blob; a symlink must stay inside the
// node folder.
func storeMember(s storer.EncodedObjectStorer, f *zip.File, name string) (zipEntry, error) {
	mode := f.Mode()
	var fm filemode.FileMode
	switch {
	case mode&os.ModeSymlink != 0:
		fm = filemode.Symlink
	case mode.IsRegular() && mode&0o111 != 0:
		fm = filemode.Executable
	case mode.IsRegular():
		fm = filemode.Regular
	default:
		return zipEntry{}, fmt.Errorf("%s: not a file, folder or link; refusing it", mode.Type())
	}
	if f.UncompressedSize64 > maxMemberBytes {
		return zipEntry{}, fmt.Errorf("%d bytes unpacked; refusing a member over %d bytes in a node pack", f.UncompressedSize64, int64(maxMemberBytes))
	}
	rc, err := f.Open()
	if err != nil {
		return zipEntry{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, int64(f.UncompressedSize64)+1))
	if err != nil {
		return zipEntry{}, err
	}
	if uint64(len(data)) != f.UncompressedSize64 {
		return zipEntry{}, errors.New("size differs from the zip's directory")
	}
	if fm == filemode.Symlink {
		target := string(data)
		if path.IsAbs(target) || strings.HasPrefix(path.Clean(path.Join(path.Dir(name), target)), "../") || path.Clean(path.Join(path.Dir(name), target)) == ".." {
			return zipEntry{}, fmt.Errorf("link to %q leaves the node folder; refusing it", target)
		}
	}
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(data)))
	w, err := obj.Writer()
	if err != nil {
		return zipEntry{}, err
	}
	if _, err := w.Write(data); err != nil {
		return zipEntry{}, err
	}
	if err := w.Close(); err != nil {
		return zipEntry{}, err
	}
	h, err := s.SetEncodedObject(obj)
	return zipEntry{mode: fm, hash: h}, err
}

// writeTrees stores the tree objects of a set of files and returns the root.
func writeTrees(s storer.EncodedObjectStorer, files map[string]zipEntry) (plumbing.Hash, error) {
	type dir struct {
		files map[string]zipEntry
		dirs  map[string]*dir
	}
	newDir := func() *dir { return &dir{files: map[string]zipEntry{}, dirs: map[string]*dir{}} }
	root := newDir()
	for p, e := range files {
		d := root
		els := strings.Split(p, "/")
		for _, el := range els[:len(els)-1] {
			if _, clash := d.files[el]; clash {
				return plumbing.ZeroHash, fmt.Errorf("%s is both a file and a folder", p)
			}
			if d.dirs[el] == nil {
				d.dirs[el] = newDir()
			}
			d = d.dirs[el]
		}
		last := els[len(els)-1]
		if d.dirs[last] != nil {
			return plumbing.ZeroHash, fmt.Errorf("%s is both a file and a folder", p)
		}
		d.files[last] = e
	}
	var write func(d *dir) (plumbing.Hash, error)
	write = func(d *dir) (plumbing.Hash, error) {
		var t object.Tree
		for name, e := range d.files {
			t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: e.mode, Hash: e.hash})
		}
		for name, sub := range d.dirs {
			if name != "" {
				h, err := write(sub)
				if err != nil {
					return plumbing.ZeroHash, err
				}
				t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
			}
		}
		// git's order: a folder sorts as if its name ended in '/'.
		key := func(e object.TreeEntry) string {
			if e.Mode == filemode.Dir {
				return e.Name + "/"
			}
			return e.Name
		}
		sort.Slice(t.Entries, func(i, j int) bool { return key(t.Entries[i]) < key(t.Entries[j]) })
		obj := s.NewEncodedObject()
		if err := t.Encode(obj); err != nil {
			return plumbing.ZeroHash, err
		}
		return s.SetEncodedObject(obj)
	}
	return write(root)
}

// openRegistryRepo is OpenMirror for a comfy-registry:// repository: the
// unpacked zip in the cache, made again from the pinned zip when missing.
func openRegistryRepo(ctx context.Context, cache *gitcache.Cache, repo, commit string) (*git.Repository, error) {
	u, err := url.Parse(repo)
	if err != nil {
		return nil, err
	}
	ln := versions.LockedNode{Registry: u.Host, Version: strings.TrimPrefix(u.Path, "/"), SHA256: u.Query().Get("sha256"), URL: u.Query().Get("url")}
	if !sha256Pattern.MatchString(ln.SHA256) {
		return nil, fmt.Errorf("registry node %s@%s: the lock's sha256 %q is not 64 lower-case hex characters; run `comfy-image lock` again", ln.Registry, ln.Version, ln.SHA256)
	}
	dir := registryDir(cacheRoot(cache))
	repoDir := filepath.Join(dir, "git", ln.SHA256+".git")
	if _, err := os.Stat(repoDir); err != nil {
		if cache.Offline {
			return nil, fmt.Errorf("registry node %s@%s: not in the cache and --offline forbids downloading it", ln.Registry, ln.Version)
		}
		if _, err := CheckDownloadURL(ln.URL, ln.URL); err != nil {
			return nil, fmt.Errorf("registry node %s@%s: %w", ln.Registry, ln.Version, err)
		}
	}
	got, _, err := registryRepo(ctx, dir, ln, ln.URL)
	if err != nil {
		return nil, fmt.Errorf("registry node %s@%s: %w", ln.Registry, ln.Version, err)
	}
	if got != commit {
		return nil, fmt.Errorf("registry node %s@%s: the zip unpacks to commit %s, the lock has %s", ln.Registry, ln.Version, got, commit)
	}
	return git.PlainOpen(repoDir)
}
