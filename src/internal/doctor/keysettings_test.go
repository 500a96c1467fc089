package doctor

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

func TestDoctorKeySettingsOnVault(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "plain")
	v.Write("transit/keys/derived", map[string]any{"derived": true})
	v.Write("transit/keys/convergent", map[string]any{"derived": true, "convergent_encryption": true})
	v.Write("transit/keys/exportable", map[string]any{"exportable": true})
	v.Write("transit/keys/backup", map[string]any{"allow_plaintext_backup": true})
	v.Write("transit/keys/rotating", map[string]any{"auto_rotate_period": "24h"})
	v.EnableTransit("strict", "kube")
	v.Write("strict/config/keys", map[string]any{"disable_upsert": true})
	v.EnableTransit("denied", "kube")
	v.Policy("no-config-read", testvault.KMSPolicy("denied", "kube"))
	limited := v.Token(&api.TokenCreateRequest{Policies: []string{"no-config-read"}, TTL: "1h"})

	for _, tc := range []struct {
		name, mount, key, token string
		encrypts                bool
		check                   string
		verdicts                []Verdict
		want                    []string
	}{
		{"plain key", "transit", "plain", "", true, "key plain material", []Verdict{Pass}, []string{"cannot leave Vault"}},
		{"derived", "transit", "derived", "", true, "key derived material", []Verdict{Fail}, []string{"derived is true", "needs a context"}},
		{"convergent", "transit", "convergent", "", false, "key convergent material", []Verdict{Fail}, []string{"derived is true"}},
		{"exportable", "transit", "exportable", "", true, "key exportable material", []Verdict{Warn}, []string{"exportable is true", "transit/export/"}},
		{"plaintext backup", "transit", "backup", "", true, "key backup material", []Verdict{Warn}, []string{"allow_plaintext_backup is true", "transit/backup/"}},
		{"no rotation", "transit", "plain", "", true, "key plain rotation", []Verdict{Note}, []string{"auto_rotate_period is 0", "vault write transit/keys/plain/config auto_rotate_period=", "min_decryption_version"}},
		{"rotation every day", "transit", "rotating", "", true, "key rotating rotation", []Verdict{Pass}, []string{"auto_rotate_period is 24h0m0s", "VAULT_KMS_KEY_REFRESH_INTERVAL=20s"}},
		{"decrypt-only key: no rotation advice", "transit", "plain", "", false, "key plain rotation", nil, nil},
		{"upsert on", "transit", "plain", "", true, "transit upsert", []Verdict{Warn}, []string{"transit/config/keys has disable_upsert false", "vault write transit/config/keys disable_upsert=true"}},
		{"upsert off", "strict", "kube", "", true, "transit upsert", []Verdict{Pass}, []string{"strict/config/keys has disable_upsert true"}},
		{"config/keys not readable", "denied", "kube", limited, true, "transit upsert", []Verdict{Note}, []string{"may not read denied/config/keys", "vault read denied/config/keys", "disable_upsert=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := v.Client()
			if tc.token != "" {
				client.SetToken(tc.token)
			}
			d := &Doctor{Cfg: &config.Config{TransitPath: tc.mount, VaultTimeout: 5 * time.Second, KeyRefreshInterval: 20 * time.Second}, Client: client}
			if tc.check == "transit upsert" {
				d.checkUpsert(context.Background())
			} else {
				d.checkKeySettings(context.Background(), tc.key, tc.encrypts)
			}
			expectResults(t, d.results, tc.check, tc.verdicts, tc.want)
		})
	}
}

// TestDoctorParseKeySettings covers answers Vault 1.21 does not give: an older
// Vault without auto_rotate_period, and servers that send a duration
// string or nonsense.
func TestDoctorParseKeySettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    map[string]any
		want    keySettings
		wantErr string
	}{
		{"no settings at all", map[string]any{}, keySettings{}, ""},
		{"seconds", map[string]any{"auto_rotate_period": json.Number("3600"), "derived": true}, keySettings{derived: true, autoRotatePeriod: time.Hour}, ""},
		{"float seconds", map[string]any{"auto_rotate_period": float64(60)}, keySettings{autoRotatePeriod: time.Minute}, ""},
		{"duration string", map[string]any{"auto_rotate_period": "720h", "exportable": true}, keySettings{exportable: true, autoRotatePeriod: 720 * time.Hour}, ""},
		{"negative seconds", map[string]any{"auto_rotate_period": json.Number("-1")}, keySettings{}, `auto_rotate_period: "-1" is not a number of seconds`},
		{"fractional seconds", map[string]any{"auto_rotate_period": json.Number("1.5")}, keySettings{}, "is not a number of seconds"},
		{"bad string", map[string]any{"auto_rotate_period": "monthly"}, keySettings{}, `"monthly" is not a duration`},
		{"wrong type", map[string]any{"auto_rotate_period": true}, keySettings{}, "unexpected bool"},
		{"not a bool", map[string]any{"exportable": "true"}, keySettings{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKeySettings(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
