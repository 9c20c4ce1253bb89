package realize

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/realize/gitcache"
	"github.com/comfy-image/comfy-image/versions"
)

// Kinds of cache entries, as `cache du` groups them.
const (
	KindMirror  = "mirrors"
	KindModel   = "models"
	KindPartial = "partial downloads"
	KindLayer   = "layers"
	KindWheel   = "wheels"
	// KindBaseLayer are the compressed layers of registry base images
	// (bases/blobs/sha256/<hex>, layers.BaseBlobsDir): no lock names a
	// base, so no version uses them and prune removes them (a later build
	// pulls them again).
	KindBaseLayer = "base layers"
)

// CacheEntry is one thing the cache holds that a lock can use.
type CacheEntry struct {
	Kind string
	// Name says what it is: a repository, a model source, a layer's part, a
	// wheel's file name.
	Name string
	// Paths are the files and folders of the entry, relative to the cache.
	Paths []string
	Size  int64
	// Users are the versions whose locks use the entry.
	Users []string
}

// CacheUsage is what a cache holds and which versions use it.
type CacheUsage struct {
	Dir     string
	Entries []CacheEntry
	// Versions are the version ids of the locks considered, sorted.
	Versions []string
	// Other is the size of what is not an entry (locks, base records...);
	// prune never removes it.
	Other int64
}

// Unused are the entries no lock uses.
func (u *CacheUsage) Unused() []CacheEntry {
	var out []CacheEntry
	for _, e := range u.Entries {
		if len(e.Users) == 0 {
			out = append(out, e)
		}
	}
	return out
}

// ReadCacheLocks reads every lock in the cache (resolved/*.lock.json) and,
// for each, the record of what its version's last build or realize used
// (see RecordUse).
func ReadCacheLocks(cacheDir string) ([]*versions.Lock, error) {
	files, err := filepath.Glob(filepath.Join(cacheDir, "resolved", "*.lock.json"))
	if err != nil {
		return nil, err
	}
	var locks []*versions.Lock
	for _, f := range files {
		l, err := versions.ReadLock(f)
		if err != nil {
			return nil, err
		}
		locks = append(locks, l)
		used, err := versions.ReadLock(strings.TrimSuffix(f, ".lock.json") + lastUsedSuffix)
		switch {
		case errors.Is(err, versions.ErrNoLock):
		case err != nil:
			return nil, err
		default:
			locks = append(locks, used)
		}
	}
	return locks, nil
}

const lastUsedSuffix = ".last-used.json"

// RecordUse records in the cache the lock a build or realize of its version
// just used. A later `lock` may drop entries from the version's lock (lock
// --update python drops the image's wheels) while the layers, wheels and
// models of the last build are still what a rebuild reuses: while the
// version has a lock in the cache, cache du and prune count this record as
// one of its locks, so prune never removes them.
func RecordUse(cacheDir string, l *versions.Lock) error {
	file := filepath.Join(cacheDir, "resolved", l.VersionID+lastUsedSuffix)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return versions.WriteLock(file, l)
}

// ScanCache lists what the cache holds and which of the locks use each
// entry. It reads the cache only.
func ScanCache(cacheDir string, locks []*versions.Lock) (*CacheUsage, error) {
	if fi, err := os.Stat(cacheDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("cache %s: not a folder", cacheDir)
	}
	users := usersOf(cacheDir, locks)
	u := &CacheUsage{Dir: cacheDir, Versions: users.versions}
	scanners := []func(string, *lockUsers) ([]CacheEntry, error){scanMirrors, scanModels, scanPartials, scanLayers, scanWheels, scanBaseLayers}
	for _, scan := range scanners {
		es, err := scan(cacheDir, users)
		if err != nil {
			return nil, err
		}
		u.Entries = append(u.Entries, es...)
	}
	total, err := dirSize(cacheDir)
	if err != nil {
		return nil, err
	}
	u.Other = total
	for _, e := range u.Entries {
		u.Other -= e.Size
	}
	return u, nil
}

// lockUsers maps what locks pin to the versions that pin it.
type lockUsers struct {
	versions []string
	mirrors  map[string][]string // mirror path relative to the cache
	models   map[string][]string // sha256
	sources  map[string][]string // source key of a model (partial downloads)
	layers   map[string][]string // layer cache key
	wheels   map[string][]string // wheel file name
	names    map[string]string   // layer key or sha256 -> what the lock calls it
}

func usersOf(cacheDir string, locks []*versions.Lock) *lockUsers {
	u := &lockUsers{mirrors: map[string][]string{}, models: map[string][]string{}, sources: map[string][]string{},
		layers: map[string][]string{}, wheels: map[string][]string{}, names: map[string]string{}}
	git := gitcache.New(gitcache.Folder(cacheDir))
	add := func(m map[string][]string, key, id string) {
		if key == "" {
			return
		}
		for _, have := range m[key] {
			if have == id {
				return
			}
		}
		m[key] = append(m[key], id)
	}
	for _, l := range locks {
		id := l.VersionID
		if !slices.Contains(u.versions, id) {
			u.versions = append(u.versions, id)
		}
		repos := []string{l.Comfy.Repo}
		for _, n := range l.CustomNodes {
			repos = append(repos, n.Repo)
		}
		for _, r := range repos {
			if p, err := git.MirrorPath(r); err == nil {
				if rel, err := filepath.Rel(cacheDir, p); err == nil {
					add(u.mirrors, rel, id)
				}
			}
		}
		for _, m := range l.Models {
			add(u.models, m.SHA256, id)
			add(u.sources, sourceKey(m.Source), id)
			u.names[m.SHA256] = m.Dest
		}
		for _, ly := range l.Layers {
			add(u.layers, ly.Key, id)
			u.names[ly.Key] = ly.Part
		}
		for _, p := range append(append([]versions.LockedPackage{}, l.Python.Packages...), l.Python.ImagePackages...) {
			add(u.wheels, p.Wheel, id)
		}
	}
	sort.Strings(u.versions)
	return u
}

// sourceKey names a model source's partial download, as models.Store does.
func sourceKey(source string) string {
	sum := sha256.Sum256([]byte(source))
	return hex.EncodeToString(sum[:])
}

// scanMirrors finds the bare mirrors: folders named *.git under git/.
func scanMirrors(cacheDir string, users *lockUsers) ([]CacheEntry, error) {
	root := gitcache.Folder(cacheDir)
	var out []CacheEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		if !d.IsDir() || !strings.HasSuffix(p, ".git") || p == root {
			return nil
		}
		rel, _ := filepath.Rel(cacheDir, p)
		size, err := dirSize(p)
		if err != nil {
			return err
		}
		name, _ := filepath.Rel(root, p)
		out = append(out, CacheEntry{Kind: KindMirror, Name: filepath.ToSlash(name), Paths: []string{rel}, Size: size, Users: users.mirrors[rel]})
		return filepath.SkipDir
	})
	return out, err
}

// scanModels finds the model files of the content-addressed store, named by
// the lock (or else the source the store fetched it from).
func scanModels(cacheDir string, users *lockUsers) ([]CacheEntry, error) {
	dir := filepath.Join(cacheDir, "models")
	sources := map[string][]string{} // sha256 -> index files
	sourceName := map[string]string{}
	idx, _ := filepath.Glob(filepath.Join(dir, "sources", "*.json"))
	for _, f := range idx {
		var k struct {
			Source string `json:"source"`
			SHA256 string `json:"sha256"`
		}
		if data, err := os.ReadFile(f); err == nil && json.Unmarshal(data, &k) == nil {
			rel, _ := filepath.Rel(cacheDir, f)
			sources[k.SHA256] = append(sources[k.SHA256], rel)
			sourceName[k.SHA256] = repourl.Redact(k.Source)
		}
	}
	blobs, err := os.ReadDir(filepath.Join(dir, "sha256"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []CacheEntry
	for _, b := range blobs {
		fi, err := b.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		sha := b.Name()
		name := users.names[sha]
		if name == "" {
			name = sourceName[sha]
		}
		if name == "" {
			name = "sha256:" + sha[:min(12, len(sha))]
		}
		paths := append([]string{filepath.Join("models", "sha256", sha)}, sources[sha]...)
		out = append(out, CacheEntry{Kind: KindModel, Name: name, Paths: paths, Size: fi.Size(), Users: users.models[sha]})
	}
	return out, nil
}

// scanPartials finds interrupted model downloads (models/tmp/<key>.part),
// which a rerun resumes.
func scanPartials(cacheDir string, users *lockUsers) ([]CacheEntry, error) {
	parts, _ := filepath.Glob(filepath.Join(cacheDir, "models", "tmp", "*.part"))
	var out []CacheEntry
	for _, p := range parts {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		key := strings.TrimSuffix(filepath.Base(p), ".part")
		rel, _ := filepath.Rel(cacheDir, p)
		out = append(out, CacheEntry{Kind: KindPartial, Name: "download " + key[:min(12, len(key))], Paths: []string{rel}, Size: fi.Size(), Users: users.sources[key]})
	}
	return out, nil
}

// scanLayers finds packed layers (layers/<kk>/<key>.blob and .json) and the
// records of model layers (model-layers/<key>.json).
func scanLayers(cacheDir string, users *lockUsers) ([]CacheEntry, error) {
	var out []CacheEntry
	metas, _ := filepath.Glob(filepath.Join(cacheDir, "layers", "*", "*.json"))
	for _, m := range metas {
		key := strings.TrimSuffix(filepath.Base(m), ".json")
		blob := strings.TrimSuffix(m, ".json") + ".blob"
		var size int64
		paths := []string{rel(cacheDir, m)}
		if fi, err := os.Stat(blob); err == nil {
			size = fi.Size()
			paths = append(paths, rel(cacheDir, blob))
		}
		out = append(out, CacheEntry{Kind: KindLayer, Name: layerName(users, key), Paths: paths, Size: size, Users: users.layers[key]})
	}
	records, _ := filepath.Glob(filepath.Join(cacheDir, "model-layers", "*.json"))
	for _, r := range records {
		key := strings.TrimSuffix(filepath.Base(r), ".json")
		fi, err := os.Stat(r)
		if err != nil {
			continue
		}
		out = append(out, CacheEntry{Kind: KindLayer, Name: layerName(users, key) + " (digest record)", Paths: []string{rel(cacheDir, r)}, Size: fi.Size(), Users: users.layers[key]})
	}
	return out, nil
}

func layerName(users *lockUsers, key string) string {
	if n := users.names[key]; n != "" {
		return n
	}
	return "layer " + key[:min(12, len(key))]
}

// scanWheels finds the wheels fetched for images (wheels/*.whl).
func scanWheels(cacheDir string, users *lockUsers) ([]CacheEntry, error) {
	files, _ := filepath.Glob(filepath.Join(cacheDir, "wheels", "*.whl"))
	var out []CacheEntry
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, CacheEntry{Kind: KindWheel, Name: filepath.Base(f), Paths: []string{rel(cacheDir, f)}, Size: fi.Size(), Users: users.wheels[filepath.Base(f)]})
	}
	return out, nil
}

// scanBaseLayers finds the cached layers of base images.
func scanBaseLayers(cacheDir string, _ *lockUsers) ([]CacheEntry, error) {
	files, _ := filepath.Glob(filepath.Join(cacheDir, "bases", "blobs", "sha256", "*"))
	var out []CacheEntry
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil || !fi.Mode().IsRegular() || strings.Contains(filepath.Base(f), ".") {
			continue // a lock or a pull under way
		}
		out = append(out, CacheEntry{Kind: KindBaseLayer, Name: "sha256:" + filepath.Base(f), Paths: []string{rel(cacheDir, f)}, Size: fi.Size()})
	}
	return out, nil
}

func rel(base, p string) string {
	r, err := filepath.Rel(base, p)
	if err != nil {
		return p
	}
	return r
}

// dirSize is the total size of the regular files under dir; links are not
// followed.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// inUseLock is the cache-wide lock: every command that writes the cache
// holds it shared; prune holds it exclusive, so it never removes what a
// running lock, realize or build is about to record in its lock.
func inUseLock(cacheDir string) *flock.Flock {
	return flock.New(filepath.Join(cacheDir, "in-use.lock"))
}

// UseCache holds the cache shared until release is called, waiting for a
// running `cache prune` to end (it says so on log).
func UseCache(ctx context.Context, cacheDir string, opts Options) (release func(), err error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %w", cacheDir, err)
	}
	fl := inUseLock(cacheDir)
	ok, err := fl.TryRLock()
	if err == nil && !ok {
		fmt.Fprintf(opts.log(), "waiting for `comfy-image cache prune` to finish with %s\n", cacheDir)
		ok, err = fl.TryRLockContext(ctx, 100*time.Millisecond)
	}
	if err != nil || !ok {
		return nil, fmt.Errorf("cache %s: take the cache lock: %w", cacheDir, err)
	}
	return func() { fl.Unlock() }, nil
}

// ErrCacheBusy is returned by PruneCache while another command uses the
// cache.
var ErrCacheBusy = errors.New("the cache is in use by a running lock, realize or build; prune when it ends")

// PruneCache removes the entries of the cache that none of locks uses, and
// returns them. It holds the cache exclusive (see UseCache) and each
// mirror's and layer's own lock, so it never races a running command. With
// dryRun it only reports.
func PruneCache(cacheDir string, locks []*versions.Lock, dryRun bool) ([]CacheEntry, error) {
	var release func()
	if !dryRun {
		fl := inUseLock(cacheDir)
		ok, err := fl.TryLock()
		if err != nil {
			return nil, fmt.Errorf("cache %s: take the cache lock: %w", cacheDir, err)
		}
		if !ok {
			return nil, fmt.Errorf("cache %s: %w", cacheDir, ErrCacheBusy)
		}
		release = func() { fl.Unlock() }
		defer release()
	}
	u, err := ScanCache(cacheDir, locks)
	if err != nil {
		return nil, err
	}
	unused := u.Unused()
	if dryRun {
		return unused, nil
	}
	var removed []CacheEntry
	for _, e := range unused {
		if err := removeEntry(cacheDir, e); err != nil {
			return removed, err
		}
		removed = append(removed, e)
	}
	return removed, nil
}

// removeEntry removes an entry's files under the lock its writers take.
func removeEntry(cacheDir string, e CacheEntry) error {
	first := filepath.Join(cacheDir, e.Paths[0])
	var lockFile string
	switch e.Kind {
	case KindMirror:
		lockFile = first + ".lock" // gitcache's per-mirror lock
	case KindLayer:
		if len(e.Paths) > 1 {
			lockFile = filepath.Join(cacheDir, e.Paths[1]) + ".lock" // layers.Cache's per-blob lock
		}
	case KindBaseLayer:
		lockFile = first + ".lock" // the pull's lock
	case KindPartial:
		lockFile = strings.TrimSuffix(first, ".part") + ".lock" // the download's lock
	}
	if lockFile != "" {
		fl := flock.New(lockFile)
		ok, err := fl.TryLock()
		if err != nil || !ok {
			return fmt.Errorf("remove %s %s: it is in use", e.Kind, e.Name)
		}
		defer func() {
			fl.Unlock()
			os.Remove(lockFile)
		}()
	}
	for _, p := range e.Paths {
		if err := os.RemoveAll(filepath.Join(cacheDir, p)); err != nil {
			return fmt.Errorf("remove %s %s: %w", e.Kind, e.Name, err)
		}
	}
	return nil
}
