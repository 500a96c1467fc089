package kms

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// onVault returns a service on the real transit of v, healthy, with its
// session running until the test ends.
func onVault(t *testing.T, v *testvault.Server, refresh time.Duration, opts ...Option) *Service {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(v.Transit(t, false), []string{"kube"}, refresh, log, opts...)
	// Status answers once the session's first login is done too.
	waitFor(t, "the first key read and login", func() bool { return s.Refresh(context.Background()) == nil && s.Health() == nil })
	return s
}

// Vault trouble of each kind against the grace: an outage (stopped,
// sealed) keeps the verified key_id until the grace ends; a deleted key
// fails Status at once.
func TestStatusGraceOnVault(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		break_  func(t *testing.T, v *testvault.Server)
		wantErr string // "": the key_id verified before
	}{
		{name: "stopped, within grace", grace: time.Hour, break_: stop},
		{name: "sealed, within grace", grace: time.Hour, break_: seal},
		{name: "stopped, no grace", grace: 0, break_: stop, wantErr: "connection refused"},
		{name: "key deleted, within grace", grace: time.Hour, break_: deleteKey, wantErr: "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := testvault.Start(t, testvault.Options{Persistent: true})
			v.EnableTransit("transit", "kube")
			clk := &clock{t: time.Now()}
			s := onVault(t, v, time.Hour, WithStatusGrace(tc.grace))
			before := verifyOn(t, s, clk)

			tc.break_(t, v)
			if err := s.Refresh(context.Background()); err == nil {
				t.Fatal("the key read succeeds on a broken Vault")
			}
			st, err := s.Status(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("status %+v, %v; want an error mentioning %q", st, err, tc.wantErr)
				}
				return
			}
			if err != nil || st.KeyID != before.KeyID {
				t.Fatalf("status %+v, %v; want the verified key_id %q", st, err, before.KeyID)
			}
			// The grace ends: Status fails and names the setting.
			clk.t = clk.t.Add(tc.grace + time.Second)
			if _, err := s.Status(context.Background()); err == nil || !strings.Contains(err.Error(), "VAULT_KMS_STATUS_GRACE") {
				t.Fatalf("status past the grace: %v; want an error naming VAULT_KMS_STATUS_GRACE", err)
			}
		})
	}
}

// A short Vault restart with an hour between refreshes: Run's retries,
// not the next tick, bring Status back.
func TestRunRecoversSoonAfterVaultDoes(t *testing.T) {
	v := testvault.Start(t, testvault.Options{Persistent: true})
	v.EnableTransit("transit", "kube")
	s := onVault(t, v, time.Hour)
	v.Stop()

	runInBackground(t, s)
	waitFor(t, "Status to fail with Vault stopped", func() bool {
		_, err := s.Status(context.Background())
		return err != nil
	})
	v.Start()
	back := time.Now()
	waitFor(t, "Status to recover after Vault did", func() bool {
		_, err := s.Status(context.Background())
		return err == nil
	})
	t.Logf("Status ok %s after Vault was back, with an hour between refreshes", time.Since(back).Round(10*time.Millisecond))
}

func stop(_ *testing.T, v *testvault.Server) { v.Stop() }
func seal(_ *testing.T, v *testvault.Server) { v.Seal() }

func deleteKey(t *testing.T, v *testvault.Server) {
	v.Write("transit/keys/kube/config", map[string]any{"deletion_allowed": true})
	if _, err := v.Client().Logical().Delete("transit/keys/kube"); err != nil {
		t.Fatal(err)
	}
}

// Real transit answers with the pinned version, so the check on Vault's
// answer passes, for every version the key has had.
func TestEncryptChecksVaultsAnswerOnVault(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	s := onVault(t, v, time.Hour)
	for want := 1; want <= 3; want++ {
		if want > 1 {
			if got := v.Rotate("transit", "kube"); got != want {
				t.Fatalf("rotated to version %d; want %d", got, want)
			}
			if err := s.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		res, err := s.Encrypt(context.Background(), "uid", []byte("0123456789abcdef0123456789abcdef"))
		if err != nil {
			t.Fatalf("version %d: %v", want, err)
		}
		if prefix := fmt.Sprintf("kube:vault:v%d:", want); !strings.HasPrefix(string(res.Ciphertext), prefix) {
			t.Fatalf("version %d: ciphertext does not start with %q", want, prefix)
		}
		pt, err := s.Decrypt(context.Background(), "uid", &DecryptRequest{Ciphertext: res.Ciphertext, KeyID: res.KeyID})
		if err != nil || string(pt) != "0123456789abcdef0123456789abcdef" {
			t.Fatalf("version %d: decrypt: %v", want, err)
		}
	}
}
