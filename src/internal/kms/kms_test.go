package kms

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

func encodeB64(b []byte) string          { return base64.StdEncoding.EncodeToString(b) }
func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newService(t *testing.T, f *fakeBackend, keys ...string) *Service {
	t.Helper()
	s := New(f, keys, time.Hour, quiet)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseCiphertext(t *testing.T) {
	for _, tc := range []struct {
		in       string
		key, ct  string
		wantFail bool
	}{
		{in: "kube:vault:v1:QUJD", key: "kube", ct: "vault:v1:QUJD"},
		{in: "vault:vault:v12:QUJDRA==", key: "vault", ct: "vault:v12:QUJDRA=="},
		{in: "vault:v3:QUJD", key: "", ct: "vault:v3:QUJD"},
		{in: "", wantFail: true},
		{in: "kube:", wantFail: true},
		{in: ":vault:v1:QUJD", wantFail: true},
		{in: "kube:vault:v0:QUJD", wantFail: true},
		{in: "kube:vault:v1:", wantFail: true},
		{in: "kube:vault:v1:QU JD", wantFail: true},
		{in: "kube:vault:vx:QUJD", wantFail: true},
		{in: "kube:vault:v1:QUJD\n", wantFail: true},
		{in: "k8s:enc:kms:v2:vault:", wantFail: true},
	} {
		key, ct, err := parseCiphertext([]byte(tc.in))
		if tc.wantFail != (err != nil) || key != tc.key || ct != tc.ct {
			t.Errorf("parse %q = %q, %q, %v", tc.in, key, ct, err)
		}
	}
}

func TestKeyIDChangesWithEveryIdentityPart(t *testing.T) {
	k := &vault.Key{Name: "kube", LatestVersion: 3, LatestCreated: time.Unix(1700000000, 0)}
	base := keyID("ns|transit", k)
	if !strings.HasPrefix(base, "kube/v3/") || len(base) > maxKeyIDLen {
		t.Fatalf("key id %q", base)
	}
	variants := map[string]string{
		"namespace": keyID("ns2|transit", k),
		"mount":     keyID("ns|transit2", k),
		"version":   keyID("ns|transit", &vault.Key{Name: "kube", LatestVersion: 4, LatestCreated: k.LatestCreated}),
		"recreate":  keyID("ns|transit", &vault.Key{Name: "kube", LatestVersion: 3, LatestCreated: k.LatestCreated.Add(time.Second)}),
		"name":      keyID("ns|transit", &vault.Key{Name: "kube2", LatestVersion: 3, LatestCreated: k.LatestCreated}),
	}
	for what, id := range variants {
		if id == base {
			t.Errorf("changing the %s kept key id %q", what, id)
		}
	}
	if again := keyID("ns|transit", k); again != base {
		t.Errorf("key id not stable: %q vs %q", again, base)
	}
	long := &vault.Key{Name: strings.Repeat("k", 2000), LatestVersion: 1}
	if id := keyID("s", long); len(id) > maxKeyIDLen {
		t.Errorf("key id of %d bytes", len(id))
	}
}

// The key_id of a key version must not change when the plugin does: an
// upgrade that changes it makes every apiserver roll its DEKs. Change this
// value only on purpose, with an upgrade note.
func TestKeyIDIsPinned(t *testing.T) {
	k := &vault.Key{Name: "kube", LatestVersion: 2, LatestCreated: time.Unix(1700000000, 0)}
	if got, want := keyID("|transit", k), "kube/v2/a598c952886206237d0c2ea9a7676f71"; got != want {
		t.Fatalf("key_id %q; want %q", got, want)
	}
}

func TestEncryptPinsSnapshotVersion(t *testing.T) {
	f := newFake("kube")
	s := newService(t, f, "kube")
	st, err := s.Status(context.Background())
	if err != nil || st.Healthz != "ok" || st.Version != "v2" {
		t.Fatalf("status %+v, %v", st, err)
	}
	// Vault rotates, but until the next refresh the plugin keeps using the
	// version whose key_id it reported.
	f.rotate("kube")
	res, err := s.Encrypt(context.Background(), "uid", []byte("dek"))
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyID != st.KeyID {
		t.Fatalf("encrypt key id %q, status said %q", res.KeyID, st.KeyID)
	}
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	res2, err := s.Encrypt(context.Background(), "uid", []byte("dek"))
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := s.Status(context.Background())
	if res2.KeyID == res.KeyID || res2.KeyID != st2.KeyID {
		t.Fatalf("after refresh: encrypt %q status %q before %q", res2.KeyID, st2.KeyID, res.KeyID)
	}
	want := []call{{"read", "kube", 0}, {"encrypt", "kube", 1}, {"read", "kube", 0}, {"encrypt", "kube", 2}}
	if d := cmp.Diff(want, f.Calls()); d != "" {
		t.Fatalf("vault calls (-want +got):\n%s", d)
	}
}

func TestStatusMakesNoVaultCalls(t *testing.T) {
	f := newFake("kube")
	s := newService(t, f, "kube")
	before := len(f.Calls())
	for range 1000 {
		if _, err := s.Status(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.Calls()) - before; n != 0 {
		t.Fatalf("1000 Status calls made %d Vault calls", n)
	}
}

func TestStatusUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*fakeBackend)
		want   string
	}{
		{"vault down", func(f *fakeBackend) { f.readErr = errVaultDown }, "connection refused"},
		{"key gone", func(f *fakeBackend) { delete(f.keys, "kube") }, "transit key not found"},
		{"token", func(f *fakeBackend) { f.authErr = errors.New("renew Vault token: permission denied") }, "permission denied"},
		{"not encrypting", func(f *fakeBackend) { f.keys["kube"].SupportsEncryption = false }, "cannot encrypt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake("kube")
			s := newService(t, f, "kube")
			tc.break_(f)
			_ = s.Refresh(context.Background())
			// An error, not a healthz message beside the old key_id: with a
			// key_id the apiserver would keep writing under a key nobody vouches for.
			st, err := s.Status(context.Background())
			if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("status %+v, %v; want not ready (Unavailable) mentioning %q", st, err, tc.want)
			}
			if s.Health() == nil {
				t.Fatal("Health() is nil while Status fails")
			}
		})
	}
}

func TestStatusBeforeFirstRead(t *testing.T) {
	f := newFake("kube")
	f.readErr = errVaultDown
	s := New(f, []string{"kube"}, time.Hour, quiet)
	if _, err := s.Status(context.Background()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("status before any key read: %v; want not ready (Unavailable)", err)
	}
	_ = s.Refresh(context.Background())
	if _, err := s.Status(context.Background()); err == nil {
		t.Fatal("status with vault down and no snapshot: no error")
	}
	// Encrypt before any snapshot reads the key itself.
	f.readErr = nil
	if _, err := s.Encrypt(context.Background(), "", []byte("dek")); err != nil {
		t.Fatal(err)
	}
}

func TestDecrypt(t *testing.T) {
	f := newFake("new", "old")
	s := newService(t, f, "new", "old")
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		ct      string
		want    string
		wantErr error // nil: success
		keysTry []string
	}{
		{name: "first key", ct: "new:vault:v1:" + encodeB64([]byte("a")), want: "a", keysTry: []string{"new"}},
		{name: "second key", ct: "old:vault:v7:" + encodeB64([]byte("b")), want: "b", keysTry: []string{"old"}},
		{name: "unknown key", ct: "other:vault:v1:QUJD", wantErr: ErrKeyNotConfigured},
		{name: "garbage", ct: "\x00\xff garbage", wantErr: ErrInvalidInput},
		{name: "empty", ct: "", wantErr: ErrInvalidInput},
		{name: "oversized", ct: "new:vault:v1:" + strings.Repeat("A", 2000), wantErr: ErrInvalidInput},
		{name: "legacy unnamed", ct: "vault:v1:" + encodeB64([]byte("c")), want: "c", keysTry: []string{"new"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.Calls())
			pt, err := s.Decrypt(ctx, "", &DecryptRequest{Ciphertext: []byte(tc.ct)})
			if (err == nil) != (tc.wantErr == nil) || !errors.Is(err, tc.wantErr) || string(pt) != tc.want {
				t.Fatalf("decrypt = %q, %v; want %q, %v", pt, err, tc.want, tc.wantErr)
			}
			var tried []string
			for _, c := range f.Calls()[before:] {
				tried = append(tried, c.Key)
			}
			if d := cmp.Diff(tc.keysTry, tried); d != "" {
				t.Fatalf("keys tried (-want +got):\n%s", d)
			}
		})
	}
}

func TestEncryptRejectsBadPlaintext(t *testing.T) {
	s := newService(t, newFake("kube"), "kube")
	for _, pt := range [][]byte{nil, bytes.Repeat([]byte("x"), maxPlaintextLen+1)} {
		if _, err := s.Encrypt(context.Background(), "", pt); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("encrypt %d bytes: %v", len(pt), err)
		}
	}
}

// FuzzDecrypt feeds arbitrary ciphertexts and key ids: the service must
// answer with a value or an error, never panic, and reject what it did not
// produce before it reaches Vault.
func FuzzDecrypt(f *testing.F) {
	for _, seed := range []string{"kube:vault:v1:QUJD", "vault:v1:QUJD", "", ":", "kube:vault:v99999999999:x", "\xff\xfe"} {
		f.Add([]byte(seed), "kube/v1/abc")
	}
	fb := newFake("kube")
	s := New(fb, []string{"kube"}, time.Hour, quiet)
	f.Fuzz(func(t *testing.T, ct []byte, keyID string) {
		_, err := s.Decrypt(context.Background(), "", &DecryptRequest{Ciphertext: ct, KeyID: keyID})
		if err != nil && !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrKeyNotConfigured) && !rejectedByKey(err) {
			t.Fatalf("decrypt %q: %v; want invalid input or a key not configured", ct, err)
		}
	})
}
