package layers

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/comfy-image/comfy-image/internal/progress"
)

// LayerInfo says what one layer of an image holds.
type LayerInfo struct {
	// Index is the layer's position in the image, from 1, base layers
	// included: the same numbering in an app and a models image.
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
	Digest     string `json:"digest"`
	VersionID  string `json:"version_id,omitempty"`
	SpecDigest string `json:"spec_digest,omitempty"`
	Source     string `json:"source,omitempty"`
	Revision   string `json:"revision,omitempty"`
	// Size is the sum of the layers' (compressed) sizes.
	Size int64 `json:"size"`
	// Base is the base image's part of an app image.
	Base *BaseLayers `json:"base,omitempty"`
	// Models are the model files an app image was built for and the digest
	// of the models image built with it (--models separate).
	Models      []ModelRef  `json:"models,omitempty"`
	ModelsImage string      `json:"models_image,omitempty"`
	Layers      []LayerInfo `json:"layers"`
}

// BaseLayers is what an app image took from its base image.
type BaseLayers struct {
	Digest string `json:"digest,omitempty"` // of the base image, when labelled
	Name   string `json:"name,omitempty"`
	Layers int    `json:"layers"`
	Size   int64  `json:"size"`
}

// ModelRef is a model file an app image expects, by its path under the
// models folder.
type ModelRef struct {
	Dest   string `json:"dest"`
	SHA256 string `json:"sha256"`
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
	if d := labels[specs.AnnotationBaseImageDigest]; d != "" || labels[AnnSpecDigest] != "" && labels[AnnPart] != "models" {
		info.Base = &BaseLayers{Digest: d, Name: labels[specs.AnnotationBaseImageName]}
	}
	info.ModelsImage = labels[AnnModelsImage]
	if labels[AnnPart] != "models" {
		for k, v := range labels {
			if dest, ok := strings.CutPrefix(k, AnnModelPfx); ok {
				info.Models = append(info.Models, ModelRef{Dest: dest, SHA256: v})
			}
		}
		sort.Slice(info.Models, func(i, j int) bool { return info.Models[i].Dest < info.Models[j].Dest })
	}
	for i, l := range m.Layers {
		info.Size += l.Size
		li := LayerInfo{Index: i + 1, Part: "base", Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)}
		if part := l.Annotations[AnnPart]; part != "" {
			li.Part, li.Name, li.Repo, li.Commit = part, l.Annotations[AnnName], l.Annotations[AnnRepo], l.Annotations[AnnCommit]
			li.SHA256, li.Source = l.Annotations[AnnSHA256], l.Annotations[AnnSource]
		} else if i < len(history) {
			if mm := historyRe.FindStringSubmatch(history[i].CreatedBy); mm != nil {
				li.Part, li.Name, li.Commit, li.SHA256 = mm[1], mm[2], mm[3], mm[4]
			}
		}
		if li.Part == "base" && info.Base != nil {
			info.Base.Layers++
			info.Base.Size += l.Size
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
	fmt.Fprintf(w, "total %s in %s\n", progress.Size(info.Size), progress.Count(len(info.Layers), "layer", "layers"))
	if b := info.Base; b != nil {
		what := b.Digest
		if b.Name != "" {
			what = b.Name + "@" + b.Digest
		}
		if what == "" {
			what = "digest not recorded"
		}
		where := "layer 1"
		if b.Layers != 1 {
			where = fmt.Sprintf("layers 1-%d", b.Layers)
		}
		fmt.Fprintf(w, "base %s: %s in %s\n", what, progress.Size(b.Size), where)
	}
	if len(info.Models) > 0 {
		img := info.ModelsImage
		if img == "" {
			img = "baked in or not built"
		}
		fmt.Fprintf(w, "models image %s: %s\n", img, progress.Count(len(info.Models), "file", "files"))
		for _, m := range info.Models {
			fmt.Fprintf(w, "     model   %-48s sha256:%s\n", trimLeft(m.Dest, 48), m.SHA256[:min(12, len(m.SHA256))])
		}
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
		fmt.Fprintf(w, "%3d  %-7s %-48s %10s  %s\n", l.Index, l.Part, trimLeft(what, 48), progress.Size(l.Size), shortDigest(l.Digest))
	}
	if base > 0 && info.Base == nil {
		fmt.Fprintf(w, "(and %s)\n", progress.Count(base, "base image layer", "base image layers"))
	}
}

// trimLeft keeps the end of s in n runes, so rows fit 100 columns with long
// node names.
func trimLeft(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}

func shortDigest(d string) string {
	if i := strings.Index(d, ":"); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
