package layers

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/comfy-image/comfy-image/internal/progress"
)

// LayerInfo says what one layer of an image holds.
type LayerInfo struct {
	Index     int    `json:"index"`
	Part      string `json:"part"` // base, core, node, nodes, venv, config, model
	Name      string `json:"name,omitempty"`
	Repo      string `json:"repo,omitempty"`
	Commit    string `json:"commit,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	Source    string `json:"source,omitempty"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"`
}

// ImageInfo is what `comfy-image inspect` reports.
type ImageInfo struct {
	Digest     string      `json:"digest"`
	VersionID  string      `json:"version_id,omitempty"`
	SpecDigest string      `json:"spec_digest,omitempty"`
	Source     string      `json:"source,omitempty"`
	Revision   string      `json:"revision,omitempty"`
	Layers     []LayerInfo `json:"layers"`
}

var historyRe = regexp.MustCompile(`^comfy-image: (core|node|nodes|venv|config|model) ?(.*?)(?: at ([0-9a-f]{40}))?(?: \(sha256 ([0-9a-f]{64})\))?$`)

// Inspect reads which layer holds which part, from the manifest's layer
// annotations, or from the config history when a format dropped them
// (docker tarballs).
func Inspect(img v1.Image) (ImageInfo, error) {
	digest, err := img.Digest()
	if err != nil {
		return ImageInfo{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return ImageInfo{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return ImageInfo{}, err
	}
	labels := cf.Config.Labels
	info := ImageInfo{Digest: digest.String(), VersionID: labels[specs.AnnotationVersion], SpecDigest: labels[AnnSpecDigest],
		Source: labels[specs.AnnotationSource], Revision: labels[specs.AnnotationRevision]}
	var history []v1.History
	for _, h := range cf.History {
		if !h.EmptyLayer {
			history = append(history, h)
		}
	}
	for i, l := range m.Layers {
		li := LayerInfo{Index: i, Part: "base", Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)}
		if part := l.Annotations[AnnPart]; part != "" {
			li.Part, li.Name, li.Repo, li.Commit = part, l.Annotations[AnnName], l.Annotations[AnnRepo], l.Annotations[AnnCommit]
			li.SHA256, li.Source = l.Annotations[AnnSHA256], l.Annotations[AnnSource]
		} else if i < len(history) {
			if mm := historyRe.FindStringSubmatch(history[i].CreatedBy); mm != nil {
				li.Part, li.Name, li.Commit, li.SHA256 = mm[1], mm[2], mm[3], mm[4]
			}
		}
		info.Layers = append(info.Layers, li)
	}
	return info, nil
}

// Print writes an ImageInfo as a table.
func (info ImageInfo) Print(w io.Writer) {
	fmt.Fprintf(w, "image %s\n", info.Digest)
	if info.VersionID != "" {
		fmt.Fprintf(w, "version %s, spec %s\n", info.VersionID, info.SpecDigest)
	}
	if info.Source != "" {
		fmt.Fprintf(w, "ComfyUI %s at %s\n", info.Source, info.Revision)
	}
	base := 0
	for _, l := range info.Layers {
		if l.Part == "base" {
			base++
			continue
		}
		what := l.Name
		switch {
		case l.Commit != "":
			what += " @ " + l.Commit[:12]
		case l.SHA256 != "":
			what += " sha256:" + l.SHA256[:12]
		}
		fmt.Fprintf(w, "%3d  %-7s %-48s %10s  %s\n", l.Index, l.Part, what, progress.Size(l.Size), shortDigest(l.Digest))
	}
	if base > 0 {
		fmt.Fprintf(w, "(and %d base image layers)\n", base)
	}
}

func shortDigest(d string) string {
	if i := strings.Index(d, ":"); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
