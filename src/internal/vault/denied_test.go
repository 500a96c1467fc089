package vault_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// policyWithout is the plugin's policy for keys less the paths in missing.
func policyWithout(missing []string, keys ...string) string {
	var kept []string
	for _, line := range strings.Split(testvault.KMSPolicy("transit", keys...), "\n") {
		drop := false
		for _, m := range missing {
			drop = drop || strings.Contains(line, `"`+m+`"`)
		}
		if !drop {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// auditCount counts the answers Vault's audit log holds for requests to path.
func auditCount(t *testing.T, file, path string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		var e struct {
			Type    string `json:"type"`
			Request struct {
				Path string `json:"path"`
			} `json:"request"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Type == "response" && e.Request.Path == path {
			n++
		}
	}
	return n
}

// storm runs calls on workers goroutines n times in all, or until stop
// closes, and returns the errors.
func storm(n, workers int, stop <-chan struct{}, call func() error) []error {
	var mu sync.Mutex
	var errs []error
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				select {
				case <-stop:
					return
				default:
				}
				if err := call(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return errs
}

func TestPolicyDenialIsNamedAndCostsNoLogin(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	audit := filepath.Join(t.TempDir(), "audit.log")
	v.EnableFileAudit(audit)
	v.EnableTransit("transit", "new", "old")
	// KEY_NAMES=new,old with a policy that forgot the old key's paths.
	v.Policy("kms", policyWithout([]string{"transit/decrypt/old", "transit/keys/old"}, "new", "old"))
	oldCiphertext := v.Write("transit/encrypt/old", map[string]any{"plaintext": "ZGVr"}).Data["ciphertext"].(string)
	tr, s, obs, _ := start(t, v, appRole(t, v, "1h", "1h"), func(s *vault.Session) { s.AliveFor = time.Hour })
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil })

	// What a KMS v1 apiserver relisting Secrets does: many decrypts with
	// the key the policy misses, many at once, sent alone or grouped.
	for _, tr := range []*vault.Transit{tr, vault.NewTransit(s, "transit", 2*time.Second, true)} {
		errs := storm(1000, 16, nil, func() error {
			_, err := tr.Decrypt(context.Background(), "old", oldCiphertext)
			if !errors.As(err, new(*vault.PolicyError)) {
				return errors.New("not a policy error")
			}
			return nil
		})
		if len(errs) != 0 {
			t.Fatalf("%d of 1000 denied decrypts gave no policy error: %v", len(errs), errs[0])
		}
	}
	if n := obs.logins.Load(); n != 1 {
		t.Fatalf("%d logins for a policy denial; want only the first", n)
	}
	if n := auditCount(t, audit, "auth/token/lookup-self"); n != 1 {
		t.Fatalf("%d token lookups for 2000 denials of one live token; want 1", n)
	}

	tests := []struct {
		name           string
		call           func() error
		path, capacity string
	}{
		{"decrypt", func() error {
			_, err := tr.Decrypt(context.Background(), "old", oldCiphertext)
			return err
		}, "transit/decrypt/old", "update"},
		{"read key", func() error {
			_, err := tr.ReadKey(context.Background(), "old")
			return err
		}, "transit/keys/old", "read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var pe *vault.PolicyError
			if vault.KindOf(err) != vault.Denied || !errors.As(err, &pe) {
				t.Fatalf("error = %v; want a Denied PolicyError", err)
			}
			if pe.Path != tc.path || pe.Capability != tc.capacity {
				t.Fatalf("policy error names %q on %q; want %q on %q", pe.Capability, pe.Path, tc.capacity, tc.path)
			}
			for _, want := range []string{tc.path, tc.capacity, "policy"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
		})
	}
	// The key the policy covers still works, with the same token.
	ct, err := tr.Encrypt(context.Background(), "new", 1, []byte("dek"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Decrypt(context.Background(), "new", ct); err != nil {
		t.Fatal(err)
	}
	if n := obs.logins.Load(); n != 1 || s.Err() != nil {
		t.Fatalf("%d logins, Err() = %v", n, s.Err())
	}
}

func TestRefusedFreshTokensArePaced(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	audit := filepath.Join(t.TempDir(), "audit.log")
	v.EnableFileAudit(audit)
	v.EnableTransit("transit", "new", "old")
	v.Policy("kms", policyWithout([]string{"transit/decrypt/old"}, "new", "old"))
	oldCiphertext := v.Write("transit/encrypt/old", map[string]any{"plaintext": "ZGVr"}).Data["ciphertext"].(string)
	// Without the default policy a token cannot look itself up, so every
	// 403 looks like a dead token and asks for a login: only pacing stands
	// between the storm and Vault.
	login := appRoleWith(t, v, map[string]any{
		"token_policies": "kms", "token_no_default_policy": true, "token_ttl": "1h", "token_max_ttl": "1h",
	}, nil)
	tr, s, obs, _ := start(t, v, login, func(s *vault.Session) { s.MaxBackoff = time.Hour })
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil })

	stop := make(chan struct{})
	time.AfterFunc(3500*time.Millisecond, func() { close(stop) })
	errs := storm(1<<30, 16, stop, func() error {
		// The apiserver's calls have deadlines; a login paced past one is
		// not waited for.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := tr.Decrypt(ctx, "old", oldCiphertext)
		return err
	})
	if len(errs) < 100 {
		t.Fatalf("only %d refused decrypts: not a storm", len(errs))
	}
	// Logins come after 1 s, then 2 s more, then 4 s more: in 3.5 s, the
	// first login and at most two more.
	if n := obs.logins.Load(); n < 2 || n > 3 {
		t.Fatalf("%d logins in a 3.5 s storm of %d refusals; want 2 or 3", n, len(errs))
	}
	// Each token is looked up once, however many requests it had refused.
	if n, logins := auditCount(t, audit, "auth/token/lookup-self"), int(obs.logins.Load()); n > logins {
		t.Fatalf("%d token lookups for %d tokens", n, logins)
	}
	for _, err := range errs {
		if vault.KindOf(err) != vault.Denied && vault.KindOf(err) != vault.DeadlineExceeded {
			t.Fatalf("refused decrypt: %v", err)
		}
	}
}

func TestRateLimitedLoginWaitsAsVaultAsks(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	setupKMS(v)
	login := appRole(t, v, "1h", "1h")
	tr, s, obs, logs := start(t, v, login)
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil })
	roundTrip(t, tr)

	// A quota on logins that blocks an address for a minute once it goes
	// over one login a second, and says so in Retry-After.
	v.Write("sys/quotas/config", map[string]any{"enable_rate_limit_response_headers": true})
	v.Write("sys/quotas/rate-limit/logins", map[string]any{
		"path": "auth/approle/login", "rate": 1, "interval": "1s", "block_interval": "60s",
	})
	secretID, err := os.ReadFile(login.SecretIDFile)
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for range 3 {
		_, last = v.Client().Logical().Write("auth/approle/login", map[string]any{"role_id": login.RoleID, "secret_id": string(secretID)})
	}
	if vault.KindOf(last) != vault.LimitExceeded {
		t.Fatalf("third login in a second: %v; want a 429 from the quota", last)
	}
	if err := v.Client().Auth().Token().RevokeTree(s.Client().Token()); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	time.AfterFunc(3*time.Second, func() { close(stop) })
	errs := storm(1<<30, 8, stop, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := tr.ReadKey(ctx, "kube")
		return err
	})
	if len(errs) == 0 {
		t.Fatal("reads with a revoked token succeeded")
	}
	// One login, refused; the next waits the minute Vault asked for,
	// whatever the refused reads ask for meanwhile (without Retry-After,
	// MaxBackoff would allow one a second).
	if n := obs.loginErrs.Load(); n != 1 {
		t.Fatalf("%d refused logins in 3 s under a 60 s block; want 1", n)
	}
	var waits []time.Duration
	for _, line := range strings.Split(logs.String(), "\n") {
		var e struct {
			Msg     string        `json:"msg"`
			RetryIn time.Duration `json:"retry_in"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "vault login failed; retrying" {
			waits = append(waits, e.RetryIn)
		}
	}
	if len(waits) != 1 || waits[0] < 30*time.Second {
		t.Fatalf("waits after refused logins: %v; want one of about a minute", waits)
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("Err() = %v; want the refused token and the rate limit", err)
	}
}
