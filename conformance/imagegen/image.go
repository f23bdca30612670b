package main

import (
	"encoding/json"
	"fmt"
)

// OCI media types of what imagegen pushes.
const (
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// builtImage is an image ready to push under every one of its refs.
type builtImage struct {
	spec     ImageSpec
	refs     []imageRef
	layers   []*builtLayer
	config   []byte
	manifest []byte
	digest   string // of manifest
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

// ociConfig is the OCI image configuration (image-spec config.md), limited
// to the fields imagegen sets.
type ociConfig struct {
	Created      string        `json:"created"`
	Architecture string        `json:"architecture"`
	OS           string        `json:"os"`
	Config       runConfig     `json:"config"`
	RootFS       rootFS        `json:"rootfs"`
	History      []historyItem `json:"history"`
}

type runConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type historyItem struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

// buildImage assembles config and manifest over already built layers.
func buildImage(spec ImageSpec, layers []*builtLayer) (*builtImage, error) {
	cfg := ociConfig{
		Created:      epoch.Format("2006-01-02T15:04:05Z"),
		Architecture: "amd64",
		OS:           "linux",
		Config: runConfig{
			User:       spec.Config.User,
			Env:        spec.Config.Env,
			Entrypoint: spec.Config.Entrypoint,
			Cmd:        spec.Config.Cmd,
			WorkingDir: spec.Config.WorkingDir,
			Labels:     spec.Config.Labels,
			StopSignal: spec.Config.StopSignal,
		},
		RootFS: rootFS{Type: "layers"},
	}
	if len(spec.Config.ExposedPorts) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.Config.ExposedPorts {
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	m := manifest{SchemaVersion: 2, MediaType: mediaManifest}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		cfg.History = append(cfg.History, historyItem{Created: cfg.Created, CreatedBy: "crib conformance/imagegen: layer " + l.name})
		m.Layers = append(m.Layers, descriptor{MediaType: mediaLayer, Digest: l.digest, Size: int64(len(l.blob))})
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode image config of %s: %w", spec.Refs[0], err)
	}
	m.Config = descriptor{MediaType: mediaConfig, Digest: digestOf(cfgJSON), Size: int64(len(cfgJSON))}
	manJSON, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest of %s: %w", spec.Refs[0], err)
	}
	img := &builtImage{spec: spec, layers: layers, config: cfgJSON, manifest: manJSON, digest: digestOf(manJSON)}
	for _, r := range spec.Refs {
		ref, err := parseRef(r)
		if err != nil {
			return nil, err
		}
		img.refs = append(img.refs, ref)
	}
	return img, nil
}

// buildAll builds every image of the spec; a shared layer is built once and
// the same bytes go into every image that names it.
func buildAll(spec *Spec, vars map[string]string) ([]*builtImage, error) {
	shared := map[string]*builtLayer{}
	var images []*builtImage
	for _, is := range spec.Images {
		var layers []*builtLayer
		for _, name := range is.Layers {
			l, ok := shared[name]
			if !ok {
				var err error
				l, err = buildLayer(name, spec.Layers[name].Entries, vars, nil)
				if err != nil {
					return nil, err
				}
				shared[name] = l
			}
			layers = append(layers, l)
		}
		if len(is.Entries) > 0 {
			own, err := buildLayer(is.Refs[0], is.Entries, vars, layers)
			if err != nil {
				return nil, err
			}
			layers = append(layers, own)
		}
		img, err := buildImage(is, layers)
		if err != nil {
			return nil, err
		}
		images = append(images, img)
	}
	return images, nil
}
