package main

import (
	"archive/tar"
	"bytes"
	"slices"
	"strings"
	"testing"
)

var testSpec = imageSpec{
	binary:   []byte("\x7fELF stand-in for the plugin"),
	caBundle: []byte("-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n"),
	version:  "1.2.3",
	revision: "0123456789abcdef0123456789abcdef01234567",
	ref:      "registry.test/plugin:1.2.3",
	arch:     "amd64",
}

func buildArchive(t *testing.T, spec imageSpec) (archive []byte, manifestDigest string) {
	t.Helper()
	img, err := buildImage(spec)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeArchive(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), img.manifest.Digest
}

// TestReproducible: the same inputs give the same archive, byte for byte;
// each input changes it (the name only changes index.json, not the image).
func TestReproducible(t *testing.T) {
	first, firstManifest := buildArchive(t, testSpec)
	second, secondManifest := buildArchive(t, testSpec)
	if !bytes.Equal(first, second) || firstManifest != secondManifest {
		t.Fatalf("two builds differ: archives %s and %s, manifests %s and %s",
			sha256Digest(first), sha256Digest(second), firstManifest, secondManifest)
	}

	for _, tc := range []struct {
		name            string
		change          func(*imageSpec)
		sameManifestToo bool
	}{
		{"binary", func(s *imageSpec) { s.binary = append(slices.Clone(s.binary), 0) }, false},
		{"CA bundle", func(s *imageSpec) { s.caBundle = append(slices.Clone(s.caBundle), '\n') }, false},
		{"version", func(s *imageSpec) { s.version = "1.2.4" }, false},
		{"revision", func(s *imageSpec) { s.revision = "unknown" }, false},
		{"arch", func(s *imageSpec) { s.arch = "arm64" }, false},
		{"ref", func(s *imageSpec) { s.ref = "registry.test/plugin:other" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec
			tc.change(&spec)
			archive, manifestDigest := buildArchive(t, spec)
			if bytes.Equal(archive, first) {
				t.Errorf("a different %s gives the same archive", tc.name)
			}
			if (manifestDigest == firstManifest) != tc.sameManifestToo {
				t.Errorf("manifest %s, the first build's %s; want them equal: %v", manifestDigest, firstManifest, tc.sameManifestToo)
			}
		})
	}
}

// TestLayout: the archive is an OCI layout whose image is the Dockerfile's
// final stage on the distroless stand-in.
func TestLayout(t *testing.T) {
	archive, _ := buildArchive(t, testSpec)
	u := unpack(t, archive)

	if want := []string{"blobs/", "blobs/sha256/"}; !slices.Equal(u.names[:2], want) || !slices.IsSorted(u.names) {
		t.Errorf("archive entries %q: want blobs/ and blobs/sha256/ first, all in name order", u.names)
	}
	if got := string(u.files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout %s", got)
	}
	if len(u.files) != 6 {
		t.Errorf("%d files in the archive, want oci-layout, index.json and 4 blobs", len(u.files))
	}

	m := u.index.Manifests[0]
	if m.Annotations[annotationRefName] != testSpec.ref || m.Annotations[annotationImageName] != testSpec.ref {
		t.Errorf("index annotations %v, want both names %s", m.Annotations, testSpec.ref)
	}
	if m.Platform == nil || *m.Platform != (platform{Architecture: "amd64", OS: "linux"}) {
		t.Errorf("index platform %+v", m.Platform)
	}

	c := u.config
	if c.OS != "linux" || c.Architecture != "amd64" || c.Created != "1970-01-01T00:00:00Z" {
		t.Errorf("config os %s architecture %s created %s", c.OS, c.Architecture, c.Created)
	}
	rc := c.Config
	if rc.User != "65532:65532" || rc.WorkingDir != "/home/nonroot" ||
		!slices.Equal(rc.Entrypoint, []string{"/vault-kms-plugin"}) || !slices.Equal(rc.Cmd, []string{"serve"}) {
		t.Errorf("config user %q workdir %q entrypoint %q cmd %q", rc.User, rc.WorkingDir, rc.Entrypoint, rc.Cmd)
	}
	if !slices.Contains(rc.Env, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt") {
		t.Errorf("config env %q", rc.Env)
	}
	if rc.Labels["org.opencontainers.image.version"] != testSpec.version || rc.Labels["org.opencontainers.image.revision"] != testSpec.revision {
		t.Errorf("labels %v", rc.Labels)
	}
	if len(u.manifest.Layers) != 2 || len(c.RootFS.DiffIDs) != 2 {
		t.Fatalf("%d layers, %d diff_ids: want the base and the binary", len(u.manifest.Layers), len(c.RootFS.DiffIDs))
	}

	const dir, reg = tar.TypeDir, tar.TypeReg
	base, baseBodies := u.layer(t, 0)
	wantBase := []layerEntry{
		{"etc/", dir, 0o755, 0, 0, "root"},
		{"etc/group", reg, 0o644, 0, 0, "root"},
		{"etc/passwd", reg, 0o644, 0, 0, "root"},
		{"etc/ssl/", dir, 0o755, 0, 0, "root"},
		{"etc/ssl/certs/", dir, 0o755, 0, 0, "root"},
		{"etc/ssl/certs/ca-certificates.crt", reg, 0o644, 0, 0, "root"},
		{"home/", dir, 0o755, 0, 0, "root"},
		{"home/nonroot/", dir, 0o700, 65532, 65532, "nonroot"},
		{"root/", dir, 0o700, 0, 0, "root"},
		{"tmp/", dir, 0o1777, 0, 0, "root"},
	}
	if !slices.Equal(base, wantBase) {
		t.Errorf("base layer:\n got %v\nwant %v", base, wantBase)
	}
	if !bytes.Equal(baseBodies["etc/ssl/certs/ca-certificates.crt"], testSpec.caBundle) {
		t.Error("the base layer's CA bundle is not the one given")
	}
	for file, want := range map[string]string{
		"etc/passwd": "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
		"etc/group":  "nonroot:x:65532:\n",
	} {
		if got := string(baseBodies[file]); !strings.HasPrefix(got, "root:x:0:") || !strings.Contains(got, want) {
			t.Errorf("%s:\n%s\nwant root first and the line %q", file, got, want)
		}
	}

	app, appBodies := u.layer(t, 1)
	if want := []layerEntry{{"vault-kms-plugin", reg, 0o755, 0, 0, "root"}}; !slices.Equal(app, want) {
		t.Errorf("binary layer %v, want %v", app, want)
	}
	if !bytes.Equal(appBodies["vault-kms-plugin"], testSpec.binary) {
		t.Error("the binary layer does not hold the binary given")
	}
}

func TestBuildLayerRefusesADuplicate(t *testing.T) {
	_, err := buildLayer([]entry{rootOwned("etc/", 0o755, nil), rootOwned("etc/", 0o700, nil)})
	if err == nil || !strings.Contains(err.Error(), `"etc/" twice`) {
		t.Errorf("err = %v, want the duplicate named", err)
	}
}

func TestPlatformOf(t *testing.T) {
	for arch, want := range map[string]platform{
		"amd64": {Architecture: "amd64", OS: "linux"},
		"arm64": {Architecture: "arm64", OS: "linux", Variant: "v8"},
	} {
		if got := platformOf(arch); got != want {
			t.Errorf("platformOf(%s) = %+v, want %+v", arch, got, want)
		}
	}
}
