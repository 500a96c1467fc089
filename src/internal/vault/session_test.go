package vault_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// countingObserver counts logins and renewals.
type countingObserver struct {
	logins, loginErrs, renews, renewErrs atomic.Int64
}

func (o *countingObserver) Login(err error) {
	if err != nil {
		o.loginErrs.Add(1)
	} else {
		o.logins.Add(1)
	}
}
func (o *countingObserver) Renew(err error) {
	o.renews.Add(1)
	if err != nil {
		o.renewErrs.Add(1)
	}
}
func (o *countingObserver) TokenExpiry(time.Time) {}

// start runs a session against v with login and returns its transit calls.
// tune changes the session's settings before it runs.
func start(t *testing.T, v *testvault.Server, login vault.Login, tune ...func(*vault.Session)) (*vault.Transit, *vault.Session, *countingObserver, *testvault.Buffer) {
	t.Helper()
	t.Setenv("VAULT_ADDR", v.Addr)
	t.Setenv("VAULT_TOKEN", "")
	if v.CACert != "" {
		t.Setenv("VAULT_CACERT", v.CACert)
	}
	c, err := vault.NewClient(2*time.Second, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testvault.Buffer{}
	obs := &countingObserver{}
	s := vault.NewSession(c, login, 2*time.Second, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), obs)
	s.PollInterval = 100 * time.Millisecond
	s.MaxBackoff = time.Second
	for _, f := range tune {
		f(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return vault.NewTransit(s, "transit", 2*time.Second, false), s, obs, logs
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not within %s: %s", within, what)
}

func setupKMS(v *testvault.Server) {
	v.EnableTransit("transit", "kube")
	v.Policy("kms", testvault.KMSPolicy("transit", "kube"))
}

func roundTrip(t *testing.T, tr *vault.Transit) {
	t.Helper()
	ctx := context.Background()
	k, err := tr.ReadKey(ctx, "kube")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := tr.Encrypt(ctx, "kube", k.LatestVersion, []byte("dek-bytes"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := tr.Decrypt(ctx, "kube", ct)
	if err != nil || string(pt) != "dek-bytes" {
		t.Fatalf("decrypt = %q, %v", pt, err)
	}
}

func TestStaticTokenIsRenewed(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	setupKMS(v)
	tok := v.Token(&api.TokenCreateRequest{Policies: []string{"kms"}, TTL: "3s", ExplicitMaxTTL: "1h"})
	tr, s, obs, _ := start(t, v, vault.StaticToken{Token: tok})
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil })
	// Three TTLs later the token is alive only because it was renewed.
	time.Sleep(9 * time.Second)
	roundTrip(t, tr)
	if obs.renews.Load() < 2 || s.Err() != nil {
		t.Fatalf("renewals %d, err %v", obs.renews.Load(), s.Err())
	}
}

func TestStaticTokenExpiredIsReported(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	setupKMS(v)
	tok := v.Token(&api.TokenCreateRequest{Policies: []string{"kms"}, TTL: "2s", Renewable: new(false)})
	_, s, _, _ := start(t, v, vault.StaticToken{Token: tok})
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil })
	eventually(t, 10*time.Second, "expiry reported", func() bool { return s.Err() != nil })
}

func appRole(t *testing.T, v *testvault.Server, ttl, maxTTL string) vault.AppRole {
	t.Helper()
	return appRoleWith(t, v, map[string]any{"token_policies": "kms", "token_ttl": ttl, "token_max_ttl": maxTTL}, nil)
}

// appRoleWith enables approle and returns the login of a role with the
// given settings and a secret_id made with secretID's.
func appRoleWith(t *testing.T, v *testvault.Server, role, secretID map[string]any) vault.AppRole {
	t.Helper()
	if err := v.Client().Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	v.Write("auth/approle/role/kms", role)
	sec, err := v.Client().Logical().Read("auth/approle/role/kms/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid := v.Write("auth/approle/role/kms/secret-id", secretID)
	f := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(f, []byte(sid.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	return vault.AppRole{RoleID: sec.Data["role_id"].(string), Mount: "approle", SecretIDFile: f}
}

func TestAppRoleLogsInAgainAtMaxTTL(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	setupKMS(v)
	tr, s, obs, _ := start(t, v, appRole(t, v, "2s", "4s"))
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil })
	// Each token lives 4s at most: after 10s only fresh logins keep us going.
	time.Sleep(10 * time.Second)
	roundTrip(t, tr)
	if n := obs.logins.Load(); n < 3 {
		t.Fatalf("%d logins in 10s with a 4s max_ttl", n)
	}
	if obs.loginErrs.Load() != 0 {
		t.Fatalf("%d failed logins", obs.loginErrs.Load())
	}
}

func TestRevokedTokenTriggersOneLoginAndRetry(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	setupKMS(v)
	tr, s, obs, _ := start(t, v, appRole(t, v, "1h", "1h"))
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil })
	roundTrip(t, tr)
	before := obs.logins.Load()
	if err := v.Client().Auth().Token().RevokeTree(s.Client().Token()); err != nil {
		t.Fatal(err)
	}
	// Many callers hit the 403 at once; they share one login.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := tr.ReadKey(context.Background(), "kube"); err != nil {
				t.Errorf("read after revocation: %v", err)
			}
		})
	}
	wg.Wait()
	if n := obs.logins.Load() - before; n != 1 {
		t.Fatalf("%d logins after revocation; want exactly 1", n)
	}
}

func TestTokenFileIsReadAgainWhenItChanges(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	setupKMS(v)
	a := v.Token(&api.TokenCreateRequest{Policies: []string{"kms"}, TTL: "1h"})
	b := v.Token(&api.TokenCreateRequest{Policies: []string{"kms"}, TTL: "1h"})
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(a+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr, s, _, _ := start(t, v, vault.TokenFile{Path: f})
	eventually(t, 5*time.Second, "token a in use", func() bool { return s.Client().Token() == a })
	// What a Vault Agent sink does: write the new token to a temp file and rename.
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "token b in use", func() bool { return s.Client().Token() == b })
	// The file's tokens belong to whoever wrote them: a replaced one is
	// not the plugin's to revoke.
	if _, err := v.Client().Auth().Token().Lookup(a); err != nil {
		t.Fatalf("replaced token from the file was revoked: %v", err)
	}
	if err := v.Client().Auth().Token().RevokeTree(a); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, tr)
}

func TestTokenFileRevokedTokenIsReplacedOn403(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	setupKMS(v)
	a := v.Token(&api.TokenCreateRequest{Policies: []string{"kms"}, TTL: "1h"})
	b := v.Token(&api.TokenCreateRequest{Policies: []string{"kms"}, TTL: "1h"})
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(a), 0o600); err != nil {
		t.Fatal(err)
	}
	tr, s, _, _ := start(t, v, vault.TokenFile{Path: f})
	s.PollInterval = time.Hour // only the 403 can make it look again
	eventually(t, 5*time.Second, "token a in use", func() bool { return s.Client().Token() == a })
	// Same size and mtime granularity aside, the 403 path must re-read.
	if err := os.WriteFile(f, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Client().Auth().Token().RevokeTree(a); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, tr)
}

func TestPolicyWithoutDecryptIsPermissionDenied(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	v.Policy("enc-only", `path "transit/encrypt/kube" { capabilities = ["update"] }`)
	tok := v.Token(&api.TokenCreateRequest{Policies: []string{"enc-only"}, TTL: "1h"})
	tr, s, _, _ := start(t, v, vault.StaticToken{Token: tok})
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil })
	ct, err := tr.Encrypt(context.Background(), "kube", 1, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.Decrypt(context.Background(), "kube", ct)
	if vault.KindOf(err) != vault.Denied || !strings.Contains(err.Error(), `decrypt with key "kube"`) {
		t.Fatalf("decrypt without permission: %v", err)
	}
}

func TestCertAuthOverTLS(t *testing.T) {
	v := testvault.Start(t, testvault.Options{TLS: true})
	setupKMS(v)
	certPEM, keyPEM := clientCert(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	if err := v.Client().Sys().EnableAuthWithOptions("cert", &api.EnableAuthOptions{Type: "cert"}); err != nil {
		t.Fatal(err)
	}
	v.Write("auth/cert/certs/kms", map[string]any{"certificate": string(certPEM), "token_policies": "kms", "token_ttl": "1h"})
	t.Setenv("VAULT_CLIENT_CERT", certFile)
	t.Setenv("VAULT_CLIENT_KEY", keyFile)
	tr, s, _, _ := start(t, v, vault.Cert{Role: "kms", Mount: "cert"})
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil })
	roundTrip(t, tr)
}

// clientCert makes a self-signed client certificate for cert auth.
func clientCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kms-plugin"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA: true, BasicConstraintsValid: true, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// blockRenewals makes every renewal fail for a minute with a 429 from a
// rate-limit quota on renew-self, which it trips. (A policy that denies
// renew-self would not do: vault/api treats that token as not renewable.)
func blockRenewals(t *testing.T, v *testvault.Server) {
	t.Helper()
	v.Write("sys/quotas/rate-limit/renewals", map[string]any{
		"path": "auth/token/renew-self", "rate": 1, "interval": "1s", "block_interval": "60s",
	})
	c := v.Client()
	c.SetToken(v.Token(&api.TokenCreateRequest{TTL: "1h"}))
	var last error
	for range 3 {
		_, last = c.Auth().Token().RenewSelf(0)
	}
	if vault.KindOf(last) != vault.LimitExceeded {
		t.Fatalf("third renewal in a second: %v; want a 429 from the quota", last)
	}
}

func TestRenewalFailureKeepsTheTokenInUseWhileItLasts(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	setupKMS(v)
	// One use of the secret_id: the login after the failed renewal fails
	// too, and the plugin has only the token it holds.
	login := appRoleWith(t, v,
		map[string]any{"token_policies": "kms", "token_ttl": "8s", "token_max_ttl": "1h"},
		map[string]any{"num_uses": 1})
	blockRenewals(t, v)
	tr, s, obs, _ := start(t, v, login)
	eventually(t, 5*time.Second, "a failed renewal and a failed login", func() bool {
		return obs.renewErrs.Load() > 0 && obs.loginErrs.Load() > 0
	})
	token := s.Client().Token()
	errWhileValid := s.Err()
	sec, err := v.Client().Auth().Token().Lookup(token)
	if err != nil {
		t.Fatalf("the plugin's token is no longer valid in Vault: %v", err)
	}
	if ttl, _ := sec.TokenTTL(); ttl <= 0 {
		t.Fatalf("token TTL %s: the test's window closed", ttl)
	}
	if errWhileValid != nil {
		t.Fatalf("Err() = %v while the token still has TTL left", errWhileValid)
	}
	roundTrip(t, tr)
	// The failure is not forgotten: it explains the expiry.
	eventually(t, 15*time.Second, "expiry reported", func() bool { return s.Err() != nil })
	if msg := s.Err().Error(); !strings.Contains(msg, "expired") || !strings.Contains(msg, "login") {
		t.Fatalf("Err() after expiry = %q; want the expiry and the failed login", msg)
	}
}

func TestReplacedTokensAreRevoked(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	setupKMS(v)
	blockRenewals(t, v)
	// Long-lived tokens that cannot renew: each one is replaced about a
	// second after the login that made it, and only revocation ends it.
	login := appRoleWith(t, v,
		map[string]any{"token_policies": "kms", "token_ttl": "1h", "token_max_ttl": "1h"}, nil)
	before := len(accessors(t, v))
	tr, s, obs, _ := start(t, v, login)
	eventually(t, 20*time.Second, "4 logins", func() bool { return obs.logins.Load() >= 4 })
	roundTrip(t, tr)
	// The latest token is in use; the ones it replaced are gone (a
	// revocation may still be under way for the newest replacement).
	eventually(t, 5*time.Second, "replaced tokens revoked", func() bool {
		return len(accessors(t, v)) == before+1
	})
	if n := obs.logins.Load(); n < 4 {
		t.Fatalf("%d logins", n)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
}

// accessors lists the accessors of every token Vault holds.
func accessors(t *testing.T, v *testvault.Server) []any {
	t.Helper()
	sec, err := v.Client().Logical().List("auth/token/accessors")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := sec.Data["keys"].([]any)
	return keys
}
