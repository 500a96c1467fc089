package main

import (
	"encoding/json"
	"fmt"
)

const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	// annotationRefName names the image in index.json. containerd's import
	// keeps a value that is a whole reference (it holds a "/" or ":") as the
	// image's name; a bare tag would get a generated prefix instead.
	annotationRefName = "org.opencontainers.image.ref.name"
	// annotationImageName is containerd's own name annotation, which its
	// import prefers to the OCI one.
	annotationImageName = "io.containerd.image.name"
)

// imageSpec is what the image is made of and how it is named.
type imageSpec struct {
	binary   []byte
	caBundle []byte
	version  string
	revision string
	ref      string // the image's name: repository:tag
	arch     string // GOARCH
}

// The runtime settings of the Dockerfile's final stage: its own ENTRYPOINT,
// CMD and USER, and the Env and WorkingDir it inherits from
// distroless/static-debian12:nonroot. src/internal/chart/image_test.go keeps
// them equal to the Dockerfile.
var (
	entrypoint = []string{binaryPath}
	cmd        = []string{"serve"}
	user       = "65532:65532"
	workingDir = "/home/nonroot"
	env        = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SSL_CERT_FILE=" + caBundlePath,
	}
)

// labels are the Dockerfile's LABELs, with its VERSION and REVISION args.
func labels(version, revision string) map[string]string {
	const home = "https://github.com/vault-kms-plugin/vault-kms-plugin"
	return map[string]string{
		"org.opencontainers.image.title":       "vault-kms-plugin",
		"org.opencontainers.image.description": "Kubernetes KMS v2 (and v1) plugin that encrypts Secrets at rest with HashiCorp Vault's transit engine",
		"org.opencontainers.image.source":      home,
		"org.opencontainers.image.url":         home,
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.revision":    revision,
		"org.opencontainers.image.licenses":    "NOASSERTION",
	}
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func describe(b blob) descriptor {
	return descriptor{MediaType: b.mediaType, Digest: b.digest(), Size: len(b.data)}
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// platformOf is GOARCH as an OCI platform; arm64 carries the variant v8,
// as distroless's arm64 images do.
func platformOf(arch string) platform {
	p := platform{Architecture: arch, OS: "linux"}
	if arch == "arm64" {
		p.Variant = "v8"
	}
	return p
}

type imageConfig struct {
	Created      string        `json:"created"`
	Architecture string        `json:"architecture"`
	OS           string        `json:"os"`
	Variant      string        `json:"variant,omitempty"`
	Config       runtimeConfig `json:"config"`
	RootFS       rootFS        `json:"rootfs"`
}

type runtimeConfig struct {
	User       string            `json:"User"`
	Env        []string          `json:"Env"`
	Entrypoint []string          `json:"Entrypoint"`
	Cmd        []string          `json:"Cmd"`
	WorkingDir string            `json:"WorkingDir"`
	Labels     map[string]string `json:"Labels"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// image is a built image: every blob, and index.json, which points at the
// manifest.
type image struct {
	blobs    []blob
	index    []byte
	manifest descriptor
}

// buildImage makes the plugin's two layers (the distroless stand-in, then
// the binary, as the Dockerfile's COPY adds it on top of its base) and
// assembles the image.
func buildImage(spec imageSpec) (image, error) {
	base, err := buildLayer(baseEntries(spec.caBundle))
	if err != nil {
		return image{}, fmt.Errorf("base layer: %w", err)
	}
	app, err := buildLayer(binaryEntries(spec.binary))
	if err != nil {
		return image{}, fmt.Errorf("binary layer: %w", err)
	}
	return assemble([]layer{base, app}, runtimeConfig{
		User:       user,
		Env:        env,
		Entrypoint: entrypoint,
		Cmd:        cmd,
		WorkingDir: workingDir,
		Labels:     labels(spec.version, spec.revision),
	}, spec.ref, spec.arch)
}

// assemble makes the config, the manifest and the index of an image of
// layers that runs as rc says, named ref.
func assemble(layers []layer, rc runtimeConfig, ref, arch string) (image, error) {
	plat := platformOf(arch)
	cfg := imageConfig{
		Created:      epoch.Format("2006-01-02T15:04:05Z"),
		Architecture: plat.Architecture,
		OS:           plat.OS,
		Variant:      plat.Variant,
		Config:       rc,
		RootFS:       rootFS{Type: "layers"},
	}
	m := manifest{SchemaVersion: 2, MediaType: mediaTypeManifest}
	var blobs []blob
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		m.Layers = append(m.Layers, describe(l.blob))
		blobs = append(blobs, l.blob)
	}
	cfgBlob, err := jsonBlob(mediaTypeConfig, cfg)
	if err != nil {
		return image{}, fmt.Errorf("image config: %w", err)
	}
	m.Config = describe(cfgBlob)
	manifestBlob, err := jsonBlob(mediaTypeManifest, m)
	if err != nil {
		return image{}, fmt.Errorf("image manifest: %w", err)
	}

	manifestDesc := describe(manifestBlob)
	manifestDesc.Platform = &plat
	manifestDesc.Annotations = map[string]string{annotationRefName: ref, annotationImageName: ref}
	idx, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaTypeIndex, Manifests: []descriptor{manifestDesc}})
	if err != nil {
		return image{}, fmt.Errorf("index.json: %w", err)
	}
	return image{
		blobs:    append(blobs, cfgBlob, manifestBlob),
		index:    idx,
		manifest: manifestDesc,
	}, nil
}

// jsonBlob encodes v; encoding/json writes struct fields in declaration
// order and map keys sorted, so the same value is always the same bytes.
func jsonBlob(mediaType string, v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	return blob{mediaType: mediaType, data: data}, nil
}
