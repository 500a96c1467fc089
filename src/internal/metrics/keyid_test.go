package metrics_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/metrics"
)

// key_id_info holds one series, for the key_id reported last, whatever
// came before it; its label is a hash, never the key_id.
func TestKeyIDInfoIsOneSeriesForTheLatestKeyID(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keyIDs []string
	}{
		{"none read yet", nil},
		{"first read", []string{"kube/v1/0123456789abcdef0123456789abcdef"}},
		{"rotated", []string{"kube/v1/0123456789abcdef0123456789abcdef", "kube/v2/fedcba9876543210fedcba9876543210"}},
		{"rotated and back", []string{"kube/v1/aa", "kube/v2/bb", "kube/v1/aa"}},
		{"same key_id again", []string{"kube/v3/cc", "kube/v3/cc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New("test")
			for _, id := range tc.keyIDs {
				m.KeyID(id)
			}
			got := series(t, m.Registry, "key_id_info")
			if len(tc.keyIDs) == 0 {
				if len(got) != 0 {
					t.Fatalf("key_id_info before any key was read: %v, want no series", got)
				}
				return
			}
			last := tc.keyIDs[len(tc.keyIDs)-1]
			sum := sha256.Sum256([]byte(last))
			want := hex.EncodeToString(sum[:6])
			if len(got) != 1 || got[0].labels["key_id_hash"] != want || got[0].value != 1 {
				t.Fatalf("key_id_info = %v, want one series {key_id_hash=%q} 1", got, want)
			}
			if strings.Contains(last, got[0].labels["key_id_hash"]) {
				t.Fatalf("the label %q is part of the key_id %q", got[0].labels["key_id_hash"], last)
			}
		})
	}
}
