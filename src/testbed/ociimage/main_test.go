package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	staticOnce sync.Once
	staticPath string
	staticErr  error
)

// staticBinary is a static Go program for this machine, built once.
func staticBinary(t *testing.T) string {
	t.Helper()
	staticOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ociimage-fixture")
		if err != nil {
			staticErr = err
			return
		}
		for name, body := range map[string]string{
			"go.mod":  "module fixture\n\ngo 1.26\n",
			"main.go": "package main\n\nfunc main() { println(\"fixture\") }\n",
		} {
			if staticErr = os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); staticErr != nil {
				return
			}
		}
		cmd := exec.Command("go", "build", "-o", "fixture", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			staticErr = fmt.Errorf("%w\n%s", err, out)
			return
		}
		staticPath = filepath.Join(dir, "fixture")
	})
	if staticErr != nil {
		t.Fatalf("build the static fixture: %v", staticErr)
	}
	return staticPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if staticPath != "" {
		os.RemoveAll(filepath.Dir(staticPath))
	}
	os.Exit(code)
}

// dynamicBinary is a dynamically linked executable of the machine's own
// distribution.
func dynamicBinary(t *testing.T) string {
	t.Helper()
	const path = "/bin/true"
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("a dynamically linked fixture is needed: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return path
		}
	}
	t.Fatalf("%s is static; the test needs a dynamically linked executable", path)
	return ""
}

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// TestRun: the command writes the archive (the same bytes on a second run)
// and refuses inputs that would give an image that cannot run or would not
// import under the chart's name.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, testSpec.caBundle, 0o644); err != nil {
		t.Fatal(err)
	}
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	static := staticBinary(t)
	flags := func(binary, ref, arch, caFile, out string) []string {
		return []string{"-binary", binary, "-ref", ref, "-arch", arch, "-ca-certs", caFile,
			"-version", "1.2.3", "-revision", "abc", "-out", out}
	}
	const ref = "registry.test/plugin:1.2.3"
	arch := runtime.GOARCH

	out := filepath.Join(dir, "out", "image.oci.tar")
	for range 2 {
		if err := run(flags(static, ref, arch, ca, out)); err != nil {
			t.Fatal(err)
		}
	}
	first, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(dir, "again.oci.tar")
	if err := run(flags(static, ref, arch, ca, again)); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(again); !bytes.Equal(first, second) {
		t.Errorf("two runs wrote %s and %s", sha256Digest(first), sha256Digest(second))
	}
	u := unpack(t, first)
	if _, bodies := u.layer(t, 1); !bytes.Equal(bodies["vault-kms-plugin"], mustRead(t, static)) {
		t.Error("the archive does not hold -binary at /vault-kms-plugin")
	}
	if files, _ := os.ReadDir(filepath.Dir(out)); len(files) != 1 {
		t.Errorf("%d files where the archive is written, want only it (no temporary file left)", len(files))
	}

	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no CA bundle", flags(static, ref, arch, filepath.Join(dir, "missing.crt"), out),
			"the CA bundle " + filepath.Join(dir, "missing.crt") + " is missing: install Debian's ca-certificates package (apt-get install -y ca-certificates)"},
		{"dynamic binary", flags(dynamicBinary(t), ref, arch, ca, out), "dynamically linked (build it with CGO_ENABLED=0)"},
		{"other arch", flags(static, ref, otherArch(), ca, out), "the image is " + otherArch()},
		{"unknown arch", flags(static, ref, "riscv64", ca, out), `architecture "riscv64"`},
		{"not ELF", flags(notELF, ref, arch, ca, out), "not an ELF executable"},
		{"no binary", flags(filepath.Join(dir, "none"), ref, arch, ca, out), "read the plugin binary"},
		{"bare tag", flags(static, "1.2.3", arch, ca, out), "want repository:tag"},
		{"no tag", flags(static, "registry.test:5000/plugin", arch, ca, out), "want repository:tag"},
		{"digest", flags(static, "registry.test/plugin:1@sha256:00", arch, ca, out), "want repository:tag"},
		{"no -version", []string{"-binary", static, "-ref", ref, "-out", out}, "-version is required"},
		{"no -out", []string{"-binary", static, "-ref", ref, "-version", "1"}, "-out is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want it to say %q", err, tc.wantErr)
			}
		})
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(after, first) {
		t.Error("a refused run changed the archive written before")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
