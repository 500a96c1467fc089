package chart

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// ociImage is the one image of an OCI layout archive, as `make image-oci`
// writes it: index.json's names, the config, and each layer's members.
type ociImage struct {
	annotations map[string]string
	config      struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Config       struct {
			User       string
			Env        []string
			Entrypoint []string
			Cmd        []string
			WorkingDir string
			Labels     map[string]string
		} `json:"config"`
	}
	layers [][]layerFile // bottom layer first
}

type layerFile struct {
	hdr  tar.Header
	body []byte
}

// file is the topmost layer's copy of path (relative, no leading slash;
// a directory's path ends in "/"), and whether the image has one.
func (img ociImage) file(path string) (layerFile, bool) {
	for i := len(img.layers) - 1; i >= 0; i-- {
		for _, f := range img.layers[i] {
			if f.hdr.Name == path {
				return f, true
			}
		}
	}
	return layerFile{}, false
}

type ociDescriptor struct {
	Digest      string            `json:"digest"`
	Annotations map[string]string `json:"annotations"`
}

func readOCIArchive(t *testing.T, path string) ociImage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files, err := tarFiles(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	blob := func(digest string) []byte {
		t.Helper()
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(digest, "sha256:")]
		if !ok {
			t.Fatalf("%s: no blob %s", path, digest)
		}
		if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != digest {
			t.Fatalf("%s: blob %s does not hash to its name", path, digest)
		}
		return b
	}
	decode := func(what string, b []byte, into any) {
		t.Helper()
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s: %s: %v", path, what, err)
		}
	}

	var index struct{ Manifests []ociDescriptor }
	decode("index.json", files["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("%s: %d manifests, want one image", path, len(index.Manifests))
	}
	var manifest struct {
		Config ociDescriptor
		Layers []ociDescriptor
	}
	decode("manifest", blob(index.Manifests[0].Digest), &manifest)

	img := ociImage{annotations: index.Manifests[0].Annotations}
	decode("config", blob(manifest.Config.Digest), &img.config)
	for _, l := range manifest.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(blob(l.Digest)))
		if err != nil {
			t.Fatalf("%s: layer %s: %v", path, l.Digest, err)
		}
		members, err := tarMembers(zr)
		if err != nil {
			t.Fatalf("%s: layer %s: %v", path, l.Digest, err)
		}
		img.layers = append(img.layers, members)
	}
	return img
}

// tarFiles is a tar's regular files by name.
func tarFiles(r io.Reader) (map[string][]byte, error) {
	members, err := tarMembers(r)
	files := map[string][]byte{}
	for _, m := range members {
		if m.hdr.Typeflag == tar.TypeReg {
			files[m.hdr.Name] = m.body
		}
	}
	return files, err
}

func tarMembers(r io.Reader) ([]layerFile, error) {
	var members []layerFile
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return members, nil
		}
		if err != nil {
			return members, err
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return members, err
		}
		members = append(members, layerFile{hdr: *hdr, body: body})
	}
}
