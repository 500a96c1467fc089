package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// epoch is every mtime in the image (layer entries, the archive's own
// entries, the config's created): a rebuild of the same inputs is then the
// same bytes, whatever the clock or the files' mtimes on the build machine.
var epoch = time.Unix(0, 0).UTC()

// entry is one file or directory of a layer.
type entry struct {
	path  string // relative to /, without a leading slash; a directory ends in "/"
	mode  int64  // permission bits, with the sticky bit where it applies
	uid   int
	gid   int
	owner string // user and group name, as the image's /etc/passwd and /etc/group spell them
	body  []byte // a regular file's content; nil for a directory
}

func (e entry) isDir() bool { return strings.HasSuffix(e.path, "/") }

// blob is one content-addressed object of the image layout.
type blob struct {
	mediaType string
	data      []byte
}

func (b blob) digest() string { return sha256Digest(b.data) }

func sha256Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// layer is a gzipped layer blob and the digest of its uncompressed tar,
// which the image config lists as a diff_id.
type layer struct {
	blob
	diffID string
}

// buildLayer writes entries as a tar sorted by path (so that a parent
// directory always precedes what it holds) and gzips it without a name or a
// timestamp in the gzip header.
func buildLayer(entries []entry) (layer, error) {
	sorted := slices.SortedFunc(slices.Values(entries), func(a, b entry) int { return strings.Compare(a.path, b.path) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].path == sorted[i-1].path {
			return layer{}, fmt.Errorf("layer entry %q twice", sorted[i].path)
		}
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	for _, e := range sorted {
		hdr := &tar.Header{
			Name:    e.path,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			Uname:   e.owner,
			Gname:   e.owner,
			ModTime: epoch,
			Format:  tar.FormatUSTAR,
		}
		if e.isDir() {
			hdr.Typeflag = tar.TypeDir
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return layer{}, fmt.Errorf("layer entry %q: %w", e.path, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return layer{}, fmt.Errorf("layer entry %q: %w", e.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return layer{}, fmt.Errorf("close layer tar: %w", err)
	}

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz) // a zero gzip.Header: no name, mtime 0
	if _, err := zw.Write(tarball.Bytes()); err != nil {
		return layer{}, fmt.Errorf("gzip layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return layer{}, fmt.Errorf("gzip layer: %w", err)
	}
	return layer{
		blob:   blob{mediaType: mediaTypeLayer, data: gz.Bytes()},
		diffID: sha256Digest(tarball.Bytes()),
	}, nil
}
