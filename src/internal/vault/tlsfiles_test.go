package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// renameOver replaces path as a rotation does: a new file renamed over the
// old one, never the old one written in place.
func renameOver(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// callDriver sends encrypt and decrypt calls without pause until stopped,
// each with the apiserver's kind of deadline, and counts the failures.
type callDriver struct {
	calls, failed atomic.Int64
	mu            sync.Mutex
	errs          []error
	stop          chan struct{}
	done          chan struct{}
}

func driveCalls(tr *vault.Transit) *callDriver {
	d := &callDriver{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for i := 0; ; i++ {
			select {
			case <-d.stop:
				return
			default:
			}
			if err := encryptDecrypt(tr, fmt.Appendf(nil, "dek-%d", i)); err != nil {
				d.failed.Add(1)
				d.mu.Lock()
				d.errs = append(d.errs, err)
				d.mu.Unlock()
			}
			d.calls.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return d
}

func encryptDecrypt(tr *vault.Transit, dek []byte) error {
	// Long enough for the retries to carry a call through a Vault restart.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ct, err := tr.Encrypt(ctx, "kube", 0, dek)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	pt, err := tr.Decrypt(ctx, "kube", ct)
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	if !bytes.Equal(pt, dek) {
		return fmt.Errorf("decrypt = %q, want %q", pt, dek)
	}
	return nil
}

// finish stops the calls and fails the test if any failed.
func (d *callDriver) finish(t *testing.T) {
	t.Helper()
	close(d.stop)
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.failed.Load(); n != 0 {
		t.Errorf("%d of %d calls failed; first: %v", n, d.calls.Load(), errors.Join(d.errs[:min(3, len(d.errs))]...))
	}
	if d.calls.Load() < 50 {
		t.Errorf("only %d calls made: the rotation was not under load", d.calls.Load())
	}
}

// tlsVault is a Vault serving TLS with a certificate of ca, in a directory
// of the test's, and the files the plugin is given.
type tlsVault struct {
	*testvault.Server
	servingCert, servingKey string
	pluginCA                string // the plugin's VAULT_CACERT
}

func startTLSVault(t *testing.T, ca *vault.TestCA, alsoTrusted *vault.TestCA) *tlsVault {
	t.Helper()
	dir := t.TempDir()
	v := &tlsVault{
		servingCert: filepath.Join(dir, "vault.pem"), servingKey: filepath.Join(dir, "vault-key.pem"),
		pluginCA: filepath.Join(dir, "plugin", "ca.pem"),
	}
	certPEM, keyPEM := ca.Issue(t, "vault", true)
	renameOver(t, v.servingCert, certPEM)
	renameOver(t, v.servingKey, keyPEM)
	// The test's own root client trusts both CAs throughout.
	testCAFile := filepath.Join(dir, "test-ca.pem")
	renameOver(t, testCAFile, append(append([]byte{}, ca.PEM...), alsoTrusted.PEM...))
	if err := os.Mkdir(filepath.Dir(v.pluginCA), 0o700); err != nil {
		t.Fatal(err)
	}
	renameOver(t, v.pluginCA, ca.PEM)
	v.Server = testvault.Start(t, testvault.Options{ServingCert: &testvault.ServingCert{
		CertFile: v.servingCert, KeyFile: v.servingKey, CAFile: testCAFile,
	}})
	setupKMS(v.Server)
	return v
}

// reissue gives Vault a new serving certificate from ca, which it reads
// on SIGHUP.
func (v *tlsVault) reissue(t *testing.T, ca *vault.TestCA) {
	t.Helper()
	certPEM, keyPEM := ca.Issue(t, "vault", true)
	renameOver(t, v.servingKey, keyPEM)
	renameOver(t, v.servingCert, certPEM)
	if err := syscall.Kill(v.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// pluginClient is the plugin's client and session as serve builds them,
// from the VAULT_* variables, with their logs.
func pluginClient(t *testing.T, v *tlsVault, login vault.Login, wrap func(http.RoundTripper) http.RoundTripper) (*vault.Transit, *vault.Session, *countingObserver, *testvault.Buffer) {
	t.Helper()
	t.Setenv("VAULT_ADDR", v.Addr)
	t.Setenv("VAULT_TOKEN", "")
	t.Setenv("VAULT_CACERT", v.pluginCA)
	logs := &testvault.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := vault.NewClient(5*time.Second, 8, wrap, vault.WithLog(log))
	if err != nil {
		t.Fatal(err)
	}
	obs := &countingObserver{}
	s := vault.NewSession(c, login, 5*time.Second, log, obs)
	s.MaxBackoff = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("plugin log:\n%s", logs.String())
		}
	})
	eventually(t, 10*time.Second, "logged in", func() bool { return s.Err() == nil })
	return vault.NewTransit(s, "transit", 5*time.Second, false), s, obs, logs
}

// settle waits until a rotation is surely seen: the files are looked at
// once a second, at the next request.
func settle() { time.Sleep(2500 * time.Millisecond) }

// A client certificate renamed over the old one is used from the next
// login on, with no call failing: the old certificate's CA is then
// removed from the cert auth role, so a login with it would fail. A pair
// caught half-written keeps the old certificate and says so.
func TestClientCertificateRotationUnderLoad(t *testing.T) {
	vaultCA, spare := vault.NewTestCA(t, "vault-ca"), vault.NewTestCA(t, "spare-ca")
	v := startTLSVault(t, vaultCA, spare)
	oldCA, newCA := vault.NewTestCA(t, "clients-2025"), vault.NewTestCA(t, "clients-2026")
	if err := v.Client().Sys().EnableAuthWithOptions("cert", &api.EnableAuthOptions{Type: "cert"}); err != nil {
		t.Fatal(err)
	}
	// Tokens of 3 s: the session logs in again every two seconds or so.
	role := func(trusted ...*vault.TestCA) {
		var bundle []byte
		for _, ca := range trusted {
			bundle = append(bundle, ca.PEM...)
		}
		v.Write("auth/cert/certs/kms", map[string]any{"certificate": string(bundle), "token_policies": "kms", "token_ttl": "3s", "token_max_ttl": "3s"})
	}
	role(oldCA)
	dir := filepath.Join(t.TempDir(), "client")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	oldCert, oldKey := oldCA.Issue(t, "kms-old", false)
	renameOver(t, certFile, oldCert)
	renameOver(t, keyFile, oldKey)
	t.Setenv("VAULT_CLIENT_CERT", certFile)
	t.Setenv("VAULT_CLIENT_KEY", keyFile)

	tr, s, obs, logs := pluginClient(t, v, vault.Cert{Role: "kms", Mount: "cert"}, nil)
	calls := driveCalls(tr)
	tokenName := func() string {
		sec, err := v.Client().Auth().Token().Lookup(s.Client().Token())
		if err != nil {
			return err.Error()
		}
		meta, _ := sec.Data["meta"].(map[string]any)
		return fmt.Sprint(meta["common_name"])
	}
	if got := tokenName(); got != "kms-old" {
		t.Fatalf("logged in as %q before the rotation, want kms-old", got)
	}

	// The role trusts both CAs for the rotation, as an operator does.
	role(oldCA, newCA)
	newCert, newKey := newCA.Issue(t, "kms-new", false)
	// The certificate first: for a moment the pair does not match.
	renameOver(t, certFile, newCert)
	settle()
	if !strings.Contains(logs.String(), "cannot be used yet") || !strings.Contains(logs.String(), certFile) {
		t.Error("a half-written pair was not reported with the file's name")
	}
	renameOver(t, keyFile, newKey)
	settle()
	// The old certificate is revoked: only the new CA may log in.
	role(newCA)
	errsBefore, loginsBefore := obs.loginErrs.Load(), obs.logins.Load()
	// Several token lifetimes, each ending in a login.
	time.Sleep(8 * time.Second)
	calls.finish(t)

	if n := obs.logins.Load() - loginsBefore; n < 2 {
		t.Errorf("%d logins after the old certificate was revoked, want at least 2", n)
	}
	if n := obs.loginErrs.Load() - errsBefore; n != 0 {
		t.Errorf("%d logins failed after the rotation: a login still presented the old certificate", n)
	}
	if got := tokenName(); got != "kms-new" {
		t.Errorf("logged in as %q after the rotation, want kms-new", got)
	}
	for _, secret := range [][]byte{oldKey, newKey} {
		body := strings.Join(strings.Split(string(secret), "\n")[1:3], "")
		if strings.Contains(logs.String(), body) {
			t.Error("a private key's content is in the log")
		}
	}
}

// A Vault CA rotation, done the careful way (the new CA trusted beside the
// old one, Vault's certificate re-issued by the new CA, the old CA
// dropped), loses no call; after it, with Vault restarted so that every
// connection is new, the plugin verifies Vault with the new CA alone.
func TestVaultCARotationUnderLoad(t *testing.T) {
	oldCA, newCA := vault.NewTestCA(t, "vault-ca-2025"), vault.NewTestCA(t, "vault-ca-2026")
	v := startTLSVault(t, oldCA, newCA)
	cc := &connCounter{}
	tr, _, _, logs := pluginClient(t, v, vault.StaticToken{Token: v.RootToken}, cc.wrap)
	calls := driveCalls(tr)

	steps := []struct {
		name string
		do   func()
	}{
		{"trust both CAs", func() { renameOver(t, v.pluginCA, append(append([]byte{}, oldCA.PEM...), newCA.PEM...)) }},
		{"a CA file caught empty", func() { renameOver(t, v.pluginCA, nil) }},
		{"trust both CAs again", func() { renameOver(t, v.pluginCA, append(append([]byte{}, oldCA.PEM...), newCA.PEM...)) }},
		{"re-issue Vault's certificate from the new CA", func() { v.reissue(t, newCA) }},
		{"drop the old CA", func() { renameOver(t, v.pluginCA, newCA.PEM) }},
		{"restart Vault", func() { v.Stop(); v.Start() }},
	}
	var connsAtRestart int64
	for _, step := range steps {
		connsBefore := cc.newConns.Load()
		step.do()
		settle()
		connsAtRestart = cc.newConns.Load() - connsBefore
		t.Logf("%s: %d calls so far, %d failed, %d new connections", step.name, calls.calls.Load(), calls.failed.Load(), connsAtRestart)
	}
	calls.finish(t)
	if connsAtRestart == 0 {
		t.Error("no new connection after Vault restarted: the new CA alone was not put to the test")
	}
	if !strings.Contains(logs.String(), "cannot be used yet") || !strings.Contains(logs.String(), v.pluginCA) {
		t.Error("a CA file without a certificate was not reported with the file's name")
	}
	if err := encryptDecrypt(tr, []byte("after")); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
}
