package publish

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/gofrs/flock"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/comfy-image/comfy-image/internal/fileutil"
)

// mountRecord is a small file of which repository of a registry last
// received which blob: {"registry": {"sha256:...": "repo"}}. It is a hint
// only; a registry that no longer holds the blob answers the mount with an
// ordinary upload, at no extra request.
type mountRecord struct {
	file string
	mu   sync.Mutex
}

type mountData map[string]map[string]string

func (m *mountRecord) read() mountData {
	data := mountData{}
	if m.file == "" {
		return data
	}
	b, err := os.ReadFile(m.file)
	if err != nil || json.Unmarshal(b, &data) != nil {
		return mountData{} // missing or damaged: no hints
	}
	return data
}

// lookup finds another repository of repo's registry that holds digest.
func (m *mountRecord) lookup(repo name.Repository, digest fmt.Stringer) (name.Repository, bool) {
	from, ok := m.read()[repo.RegistryStr()][digest.String()]
	if !ok || from == repo.RepositoryStr() {
		return name.Repository{}, false
	}
	r, err := name.NewRepository(repo.RegistryStr()+"/"+from, registryOpts(repo)...)
	return r, err == nil
}

// sources are the other repositories of repo's registry in the record:
// the probe asks pull scope for them so a token allows the mounts.
func (m *mountRecord) sources(repo name.Repository) []name.Repository {
	set := map[string]bool{}
	for _, from := range m.read()[repo.RegistryStr()] {
		if from != repo.RepositoryStr() {
			set[from] = true
		}
	}
	var out []name.Repository
	for from := range set {
		if r, err := name.NewRepository(repo.RegistryStr()+"/"+from, registryOpts(repo)...); err == nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func registryOpts(repo name.Repository) []name.Option {
	if repo.Scheme() == "http" {
		return []name.Option{name.Insecure}
	}
	return nil
}

// add records that repo holds digests (locked, written atomically: several
// builds may push at once).
func (m *mountRecord) add(repo name.Repository, digests []string) error {
	if m.file == "" || len(digests) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(m.file), 0o755); err != nil {
		return err
	}
	lock := flock.New(m.file + ".lock")
	if err := lock.Lock(); err != nil {
		return err
	}
	defer lock.Unlock()
	data := m.read()
	reg := data[repo.RegistryStr()]
	if reg == nil {
		reg = map[string]string{}
		data[repo.RegistryStr()] = reg
	}
	for _, d := range digests {
		reg[d] = repo.RepositoryStr()
	}
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(m.file, b, 0o644)
}
