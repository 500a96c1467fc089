package main

import (
	"archive/tar"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// ociLayout is the oci-layout file of image layout version 1.0.0.
const ociLayout = `{"imageLayoutVersion":"1.0.0"}`

// writeArchive writes img as an OCI image layout in a tar, the form
// `ctr images import` and `docker load` read: oci-layout, index.json and
// blobs/sha256/<hex>, in name order, root-owned, every mtime the epoch.
func writeArchive(w io.Writer, img image) error {
	files := map[string][]byte{
		"oci-layout": []byte(ociLayout),
		"index.json": img.index,
	}
	for _, b := range img.blobs {
		files["blobs/sha256/"+strings.TrimPrefix(b.digest(), "sha256:")] = b.data
	}
	names := append(slices.Collect(maps.Keys(files)), "blobs/", "blobs/sha256/")
	slices.Sort(names)

	tw := tar.NewWriter(w)
	for _, name := range names {
		hdr := &tar.Header{Name: name, ModTime: epoch, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
		body, isFile := files[name]
		if isFile {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(body))
		} else {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("archive entry %s: %w", name, err)
		}
		if _, err := tw.Write(body); err != nil {
			return fmt.Errorf("archive entry %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close archive: %w", err)
	}
	return nil
}
