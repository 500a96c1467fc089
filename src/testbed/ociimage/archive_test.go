package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// unpacked is an OCI archive read back: its files by name, and the image
// index.json points at.
type unpacked struct {
	files    map[string][]byte
	names    []string // in archive order
	index    index
	manifest manifest
	config   imageConfig
}

func unpack(t *testing.T, archive []byte) unpacked {
	t.Helper()
	u := unpacked{files: map[string][]byte{}}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		if !hdr.ModTime.Equal(epoch) || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("archive entry %s: mtime %v uid %d gid %d, want the epoch and root", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read archive entry %s: %v", hdr.Name, err)
		}
		u.names = append(u.names, hdr.Name)
		if hdr.Typeflag == tar.TypeReg {
			u.files[hdr.Name] = body
		}
	}
	decode := func(name string, into any) {
		t.Helper()
		b, ok := u.files[name]
		if !ok {
			t.Fatalf("the archive has no %s", name)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	decode("index.json", &u.index)
	if len(u.index.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want 1", len(u.index.Manifests))
	}
	decode(u.blobPath(t, u.index.Manifests[0]), &u.manifest)
	decode(u.blobPath(t, u.manifest.Config), &u.config)
	return u
}

// blobPath is where d's blob is, after checking that the blob is there
// and is what d says.
func (u unpacked) blobPath(t *testing.T, d descriptor) string {
	t.Helper()
	path := "blobs/sha256/" + strings.TrimPrefix(d.Digest, "sha256:")
	b, ok := u.files[path]
	switch {
	case !ok:
		t.Fatalf("no blob %s", d.Digest)
	case sha256Digest(b) != d.Digest:
		t.Errorf("blob %s holds %s", d.Digest, sha256Digest(b))
	case len(b) != d.Size:
		t.Errorf("blob %s: %d bytes, its descriptor says %d", d.Digest, len(b), d.Size)
	}
	return path
}

// layerEntry is one layer member, as a test compares it.
type layerEntry struct {
	path     string
	typeflag byte
	mode     int64
	uid, gid int
	owner    string
}

func (e layerEntry) String() string {
	return fmt.Sprintf("%s type %c mode %#o %d:%d %s", e.path, e.typeflag, e.mode, e.uid, e.gid, e.owner)
}

// layer gunzips and lists the manifest's i-th layer, checking its diff_id.
func (u unpacked) layer(t *testing.T, i int) (entries []layerEntry, bodies map[string][]byte) {
	t.Helper()
	d := u.manifest.Layers[i]
	if d.MediaType != mediaTypeLayer {
		t.Errorf("layer %d media type %s", i, d.MediaType)
	}
	zr, err := gzip.NewReader(bytes.NewReader(u.files[u.blobPath(t, d)]))
	if err != nil {
		t.Fatalf("layer %d: %v", i, err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("layer %d gzip header: name %q mtime %v, want neither", i, zr.Name, zr.ModTime)
	}
	tarball, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer %d: %v", i, err)
	}
	if got, want := sha256Digest(tarball), u.config.RootFS.DiffIDs[i]; got != want {
		t.Errorf("layer %d: uncompressed %s, diff_id %s", i, got, want)
	}
	bodies = map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, bodies
		}
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if !hdr.ModTime.Equal(epoch) {
			t.Errorf("layer %d %s: mtime %v, want the epoch", i, hdr.Name, hdr.ModTime)
		}
		if hdr.Uname != hdr.Gname {
			t.Errorf("layer %d %s: user %s group %s", i, hdr.Name, hdr.Uname, hdr.Gname)
		}
		entries = append(entries, layerEntry{hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Uname})
		if bodies[hdr.Name], err = io.ReadAll(tr); err != nil {
			t.Fatalf("layer %d %s: %v", i, hdr.Name, err)
		}
	}
}
