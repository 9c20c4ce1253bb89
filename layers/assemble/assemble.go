// Package assemble makes the images of a build from their layers: the app
// image (a base image, the layers of a version and its config) and the
// models image. Its functions are pure: they read no file and call no
// registry, so the same inputs give the same manifest digest, whatever the
// cache holds.
package assemble

import (
	"maps"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Our annotation and label keys (OCI's own keys come from image-spec).
const (
	AnnPart       = "dev.comfy-image.part" // core, node, nodes, venv, config, model
	AnnName       = "dev.comfy-image.name"
	AnnRepo       = "dev.comfy-image.repo"
	AnnCommit     = "dev.comfy-image.commit"
	AnnSHA256     = "dev.comfy-image.sha256"
	AnnSource     = "dev.comfy-image.source"
	AnnSpecDigest = "dev.comfy-image.spec-digest"
	AnnNodePrefix = "dev.comfy-image.node."
	AnnModelPfx   = "dev.comfy-image.model."
	AnnKey        = "dev.comfy-image.key"  // a layer's cache key: what it is made from
	AnnSize       = "dev.comfy-image.size" // a model file's size
	// AnnModelsImage is the digest of the models image an app image was
	// built with (--models separate).
	AnnModelsImage = "dev.comfy-image.models-image"
)

// Layer is one layer to append, with its manifest annotations and the
// history line of the config.
type Layer struct {
	Layer v1.Layer
	// Key is the layer's cache key, annotated (AnnKey) so a later build
	// finds the layer in the registry by what it is made from ("": none).
	Key         string
	Annotations map[string]string
	History     string
}

// Node is a custom node as the app image's labels name it.
type Node struct{ Name, Repo, Commit string }

// AppConfig is what the app image is made of besides its base's layers.
type AppConfig struct {
	Layers []Layer
	// Created is the time of the config, its history and its labels
	// (SOURCE_DATE_EPOCH).
	Created time.Time
	// Root is where the version lives in the image ("opt/comfy"): the
	// working directory; its .venv is VIRTUAL_ENV and first on PATH.
	Root       string
	Entrypoint []string
	Cmd        []string
	// Ports are exposed ("8188/tcp").
	Ports []string
	// Env are further variables (the spec's, never a secret one).
	Env map[string]string

	VersionID, SpecDigest string
	// CoreRepo and CoreCommit are ComfyUI's: the image's source and revision.
	CoreRepo, CoreCommit string
	// BaseName is the base's registry reference ("": a local base, never named).
	BaseName string
	// ModelsImage is the digest of the models image ("": none).
	ModelsImage string
	Nodes       []Node
	// Models are the sha256 of each model file by its place (dest).
	Models map[string]string
	// ConfigLabels are further labels of the config only (base facts,
	// the Python set), not manifest annotations.
	ConfigLabels map[string]string
}

// defaultPath is PATH when the base sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// App appends the layers of c to base as an OCI image and sets its
// config: PATH with the venv first (the base's PATH after it), the base's
// other variables, VIRTUAL_ENV and c.Env sorted by name, the entry point,
// working directory, ports and labels. The labels are also the manifest's
// annotations.
func App(base v1.Image, c AppConfig) (v1.Image, error) {
	img, cf, err := appendOCI(base, c.Layers, c.Created)
	if err != nil {
		return nil, err
	}
	cfg := &cf.Config
	venv := "/" + path.Join(c.Root, ".venv")
	env := map[string]string{"VIRTUAL_ENV": venv}
	maps.Copy(env, c.Env)
	basePath := defaultPath
	var kept []string
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "PATH" {
			basePath = v
			continue
		}
		kept = append(kept, kv)
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cfg.Env = append([]string{"PATH=" + venv + "/bin:" + basePath}, kept...)
	for _, k := range keys {
		cfg.Env = append(cfg.Env, k+"="+env[k])
	}
	cfg.WorkingDir = "/" + c.Root
	cfg.Entrypoint, cfg.Cmd = c.Entrypoint, c.Cmd
	cfg.ExposedPorts = map[string]struct{}{}
	for _, p := range c.Ports {
		cfg.ExposedPorts[p] = struct{}{}
	}
	labels := appLabels(base, c)
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	maps.Copy(cfg.Labels, labels)
	maps.Copy(cfg.Labels, c.ConfigLabels)
	cf.Created = v1.Time{Time: c.Created}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// appLabels are the app image's labels and manifest annotations.
func appLabels(base v1.Image, c AppConfig) map[string]string {
	l := map[string]string{
		specs.AnnotationSource:   c.CoreRepo,
		specs.AnnotationRevision: c.CoreCommit,
		specs.AnnotationCreated:  c.Created.Format(time.RFC3339),
		specs.AnnotationVersion:  c.VersionID,
		specs.AnnotationTitle:    "ComfyUI " + c.VersionID,
		AnnSpecDigest:            c.SpecDigest,
	}
	if d, err := base.Digest(); err == nil {
		l[specs.AnnotationBaseImageDigest] = d.String()
	}
	if c.BaseName != "" {
		l[specs.AnnotationBaseImageName] = c.BaseName
	}
	if c.ModelsImage != "" {
		l[AnnModelsImage] = c.ModelsImage
	}
	for _, n := range c.Nodes {
		l[AnnNodePrefix+n.Name] = n.Repo + "@" + n.Commit
	}
	for dest, sha := range c.Models {
		l[AnnModelPfx+dest] = sha
	}
	return l
}

// ModelsConfig is what the models image is made of.
type ModelsConfig struct {
	Layers []Layer
	// Created is the time of the config, its history and its labels.
	Created time.Time
	// OS and Architecture are the app image's base's (a models image has
	// no binaries; a runtime still checks the platform).
	OS, Architecture      string
	VersionID, SpecDigest string
	// Models are the sha256 of each model layer by its name.
	Models map[string]string
}

// Models makes the models image: the model layers on an empty image, its
// labels (also the manifest's annotations) naming each model's sha256.
func Models(c ModelsConfig) (v1.Image, error) {
	img, cf, err := appendOCI(empty.Image, c.Layers, c.Created)
	if err != nil {
		return nil, err
	}
	cf.OS, cf.Architecture = c.OS, c.Architecture
	cf.Created = v1.Time{Time: c.Created}
	ann := map[string]string{
		specs.AnnotationVersion: c.VersionID,
		specs.AnnotationCreated: c.Created.Format(time.RFC3339),
		specs.AnnotationTitle:   "models of ComfyUI " + c.VersionID,
		AnnSpecDigest:           c.SpecDigest,
		AnnPart:                 "models",
	}
	for name, sha := range c.Models {
		ann[AnnModelPfx+name] = sha
	}
	cf.Config.Labels = ann
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, ann).(v1.Image), nil
}

// addenda are the layers with their annotations (the key added) and
// history.
func addenda(layers []Layer, created time.Time) ([]mutate.Addendum, error) {
	out := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		mt, err := l.Layer.MediaType()
		if err != nil {
			return nil, err
		}
		ann := maps.Clone(l.Annotations)
		if l.Key != "" {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[AnnKey] = l.Key
		}
		out[i] = mutate.Addendum{Layer: l.Layer, MediaType: mt, Annotations: ann,
			History: v1.History{Created: v1.Time{Time: created}, CreatedBy: l.History, Comment: "comfy-image"}}
	}
	return out, nil
}

// appendOCI appends layers to base as an OCI image and returns it with a
// copy of its config file to edit.
func appendOCI(base v1.Image, layers []Layer, created time.Time) (v1.Image, *v1.ConfigFile, error) {
	add, err := addenda(layers, created)
	if err != nil {
		return nil, nil, err
	}
	img := mutate.MediaType(base, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.Append(img, add...); err != nil {
		return nil, nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	return img, cf.DeepCopy(), nil
}
