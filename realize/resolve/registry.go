package resolve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/comfy-image/comfy-image/internal/repourl"
	"github.com/comfy-image/comfy-image/realize/checkout"
	"github.com/comfy-image/comfy-image/versions"
)

// registryVersion is the part of GET /nodes/{id}/install (a NodeVersion)
// that is used.
type registryVersion struct {
	ID          string `json:"id"`
	Version     string `json:"version"`
	DownloadURL string `json:"downloadUrl"`
	Deprecated  bool   `json:"deprecated"`
	Status      string `json:"status"`
}

// resolveRegistryNode asks the Comfy Registry for a node version, fetches
// and unpacks its zip into the cache and locks it. Warnings (a deprecated
// version) go to the log.
func (o options) resolveRegistryNode(ctx context.Context, n versions.Node) (versions.LockedNode, error) {
	label := n.Registry
	if n.Version != "" {
		label += "@" + n.Version
	} else {
		label += " (latest)"
	}
	if o.offline {
		return versions.LockedNode{}, fmt.Errorf("registry node %s: --offline, and the lock does not pin it", label)
	}
	base := checkout.RegistryBase()
	v, err := registryInstall(ctx, base, n.Registry, n.Version)
	if err != nil {
		return versions.LockedNode{}, fmt.Errorf("registry node %s: %w", label, err)
	}
	if v.Deprecated {
		fmt.Fprintf(o.log, "warning: registry node %s version %s is deprecated (%s)\n", n.Registry, v.Version, base)
	}
	dl, err := checkout.CheckDownloadURL(base, v.DownloadURL)
	if err != nil {
		return versions.LockedNode{}, fmt.Errorf("registry node %s@%s: %w", n.Registry, v.Version, err)
	}
	ln := versions.LockedNode{Name: n.Name, Registry: n.Registry, Version: v.Version, URL: repourl.Redact(dl.String())}
	ln.Repo = "https://registry.comfy.org/nodes/" + n.Registry
	ln.Ref, ln.ResolvedRef = n.Version, "registry "+n.Registry+"@"+v.Version
	commit, sha, err := checkout.UnpackRegistryZip(ctx, o.cacheDir, ln, dl.String())
	if err != nil {
		return versions.LockedNode{}, fmt.Errorf("registry node %s@%s: %w", n.Registry, v.Version, err)
	}
	ln.Commit, ln.SHA256 = commit, sha
	return ln, nil
}

func registryInstall(ctx context.Context, base, id, version string) (*registryVersion, error) {
	u := base + "/nodes/" + url.PathEscape(id) + "/install"
	if version != "" {
		u += "?version=" + url.QueryEscape(version)
	}
	resp, err := checkout.RegistryGet(ctx, u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound && version != "":
		// Tell an unknown version from an unknown node.
		if node, err := checkout.RegistryGet(ctx, base+"/nodes/"+url.PathEscape(id)); err == nil {
			node.Body.Close()
			if node.StatusCode == http.StatusOK {
				return nil, fmt.Errorf("the registry has no version %s of node %s (GET %s answered %s)", version, id, u, resp.Status)
			}
		}
		return nil, fmt.Errorf("unknown node id %s: the registry does not know it (GET %s answered %s)", id, u, resp.Status)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("unknown node id %s: the registry does not know it (GET %s answered %s)", id, u, resp.Status)
	default:
		return nil, fmt.Errorf("GET %s answered %s", u, resp.Status)
	}
	var v registryVersion
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&v); err != nil {
		return nil, fmt.Errorf("GET %s: not a node version: %v", u, err)
	}
	if v.Version == "" || v.DownloadURL == "" {
		return nil, fmt.Errorf("GET %s: the answer has no version or downloadUrl", u)
	}
	if version != "" && v.Version != version {
		return nil, fmt.Errorf("GET %s: asked for version %s, the registry answered %s", u, version, v.Version)
	}
	return &v, nil
}
