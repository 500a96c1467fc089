package bed

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
)

func TestBinNamesTheMissingBinaryAndTheFix(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "etcd"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TESTBED_BIN", dir)
	for _, tc := range []struct {
		name, want string
	}{
		{"etcd", filepath.Join(dir, "etcd")},
		{"kube-apiserver", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness.Program{Stderr: io.Discard}
			var got string
			err := h.Run(func() error { got = Bin(h, tc.name); return nil })
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("Bin(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, tc.name)+" is missing") || !strings.Contains(err.Error(), "scripts/testbed.sh --adopt") {
				t.Fatalf("Bin(%q) with no such file: %v; want an error naming the path and scripts/testbed.sh", tc.name, err)
			}
		})
	}
}
