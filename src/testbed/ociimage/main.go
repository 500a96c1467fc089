// Command ociimage builds the plugin's container image without Docker: an
// OCI image layout archive, for `ctr images import`, with the entrypoint,
// user, working directory, environment, labels and file layout of the final
// stage of images/vault-kms-plugin/Dockerfile. Its base layer stands in for
// distroless/static-debian12:nonroot (see rootfs.go). The same inputs give
// the same archive, byte for byte.
//
//	ociimage -binary bin/image/vault-kms-plugin-linux-amd64 -arch amd64 \
//	  -version 0.1.0 -revision "$(git rev-parse HEAD)" \
//	  -ref ghcr.io/vault-kms-plugin/vault-kms-plugin:0.1.0 \
//	  -out bin/image/vault-kms-plugin-amd64.oci.tar
//
// `make image-oci` runs it that way.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("ociimage", flag.ContinueOnError)
	binaryFile := fl.String("binary", "", "the static plugin binary (required)")
	out := fl.String("out", "", "the OCI archive to write (required)")
	version := fl.String("version", "", "the release, for the version label (required)")
	revision := fl.String("revision", "unknown", "the commit, for the revision label")
	ref := fl.String("ref", "", "the image's name, repository:tag (required)")
	arch := fl.String("arch", runtime.GOARCH, "the image's architecture (GOARCH); the binary must be built for it")
	caFile := fl.String("ca-certs", caBundlePath, "the CA bundle to put at "+caBundlePath)
	pause := fl.Bool("pause", false, "build the test bed's pod sandbox image from the pause binary instead (-version is then not used)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *pause && *version == "" {
		*version = "none"
	}
	for _, required := range []struct{ flag, value string }{
		{"-binary", *binaryFile}, {"-out", *out}, {"-version", *version}, {"-ref", *ref},
	} {
		if required.value == "" {
			return fmt.Errorf("%s is required", required.flag)
		}
	}
	if err := checkRef(*ref); err != nil {
		return err
	}

	binary, err := os.ReadFile(*binaryFile)
	if err != nil {
		return fmt.Errorf("read the plugin binary: %w", err)
	}
	if err := checkStaticBinary(binary, *arch); err != nil {
		return fmt.Errorf("binary %s: %w", *binaryFile, err)
	}
	if *pause {
		img, err := buildPauseImage(binary, *ref, *arch)
		if err != nil {
			return err
		}
		return write(img, *out, *ref)
	}
	caBundle, err := os.ReadFile(*caFile)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the CA bundle %s is missing: install Debian's ca-certificates package (apt-get install -y ca-certificates)", *caFile)
	}
	if err != nil {
		return fmt.Errorf("read the CA bundle: %w", err)
	}

	img, err := buildImage(imageSpec{
		binary: binary, caBundle: caBundle,
		version: *version, revision: *revision, ref: *ref, arch: *arch,
	})
	if err != nil {
		return err
	}
	return write(img, *out, *ref)
}

// write writes img as an OCI archive at out and says what it wrote.
func write(img image, out, ref string) error {
	var archive bytes.Buffer
	if err := writeArchive(&archive, img); err != nil {
		return err
	}
	if err := writeFileAtomic(out, archive.Bytes()); err != nil {
		return err
	}
	fmt.Printf("%s: %s %s\n", out, ref, img.manifest.Digest)
	return nil
}

// checkRef wants a name with a tag: a bare tag, or a name without one,
// would not import under the name the chart pulls.
func checkRef(ref string) error {
	name, tag, hasTag := strings.Cut(ref[strings.LastIndex(ref, "/")+1:], ":")
	if !strings.Contains(ref, "/") || name == "" || !hasTag || tag == "" || strings.Contains(ref, "@") {
		return fmt.Errorf("-ref %q: want repository:tag, e.g. ghcr.io/vault-kms-plugin/vault-kms-plugin:0.1.0", ref)
	}
	return nil
}

// writeFileAtomic writes through a temporary file in the same directory, so
// that an interrupted build leaves no truncated archive under the name.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
