// Package doctor checks a plugin's setup before an apiserver depends on it:
// Vault, auth, policy, keys, the EncryptionConfiguration and whether the
// apiserver can open the socket, each with a verdict and the fix.
package doctor

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// Verdict of one check.
type Verdict string

const (
	Pass Verdict = "PASS"
	Warn Verdict = "WARN"
	Fail Verdict = "FAIL"
)

// Result is one check's outcome.
type Result struct {
	Check   string
	Verdict Verdict
	Detail  string
	Fix     string
}

// Doctor runs the checks with the plugin's own configuration and client.
type Doctor struct {
	Cfg    *config.Config
	Client *api.Client
	Login  vault.Login
	// Deployment is how the plugin runs, for the cold-start check of the
	// EncryptionConfiguration.
	Deployment Deployment
	// EncryptionConfig is the path of an EncryptionConfiguration to check;
	// empty skips that check.
	EncryptionConfig string
	// ProcRoot is where the socket check looks for kube-apiserver
	// processes; empty means /proc.
	ProcRoot string

	results []Result
}

func (d *Doctor) add(check string, v Verdict, detail, fix string) {
	d.results = append(d.results, Result{check, v, detail, fix})
}

// Run performs every check that the earlier ones leave possible: without a
// reachable Vault there is no login to check, and so on.
func (d *Doctor) Run(ctx context.Context) []Result {
	d.results = nil
	d.checkStatusGrace()
	d.checkSocketAccess()
	if d.EncryptionConfig != "" {
		d.checkEncryptionConfig()
	}
	if d.checkVault(ctx) && d.checkLogin(ctx) {
		d.checkKeys(ctx)
		d.checkRoundTrip(ctx)
	}
	return d.results
}

// Print writes results as a table and reports whether all passed.
func Print(w io.Writer, results []Result) (ok bool) {
	ok = true
	for _, r := range results {
		fmt.Fprintf(w, "%-4s  %-22s %s\n", r.Verdict, r.Check, r.Detail)
		if r.Fix != "" && r.Verdict != Pass {
			fmt.Fprintf(w, "      %-22s fix: %s\n", "", r.Fix)
		}
		if r.Verdict == Fail {
			ok = false
		}
	}
	return ok
}

func (d *Doctor) checkVault(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, d.Cfg.VaultTimeout+3*time.Second)
	defer cancel()
	h, err := d.Client.Sys().HealthWithContext(ctx)
	addr := d.Client.Address()
	switch {
	case err != nil:
		d.add("vault reachable", Fail, fmt.Sprintf("cannot reach VAULT_ADDR=%s: %v", addr, err),
			"check VAULT_ADDR, DNS and firewalls from this node, and VAULT_CACERT if Vault serves TLS")
		return false
	case !h.Initialized:
		d.add("vault reachable", Fail, addr+" is not initialized", "initialize Vault (vault operator init)")
		return false
	case h.Sealed:
		d.add("vault unsealed", Fail, addr+" is sealed", "unseal Vault (vault operator unseal); the plugin recovers by itself once it is")
		return false
	}
	d.add("vault reachable", Pass, fmt.Sprintf("%s, Vault %s, unsealed", addr, h.Version), "")
	return true
}

func (d *Doctor) checkLogin(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, d.Cfg.VaultTimeout+3*time.Second)
	defer cancel()
	s, err := d.Login.Login(ctx, d.Client)
	if err != nil || s == nil || s.Auth == nil {
		d.add("auth", Fail, fmt.Sprintf("%s login failed: %v", d.Cfg.AuthMethod, err), loginFix(d.Cfg))
		return false
	}
	d.Client.SetToken(s.Auth.ClientToken)
	ttl := "never expires"
	if s.Auth.LeaseDuration > 0 {
		ttl = fmt.Sprintf("ttl %s", time.Duration(s.Auth.LeaseDuration)*time.Second)
	}
	d.add("auth", Pass, fmt.Sprintf("%s login works (%s, renewable=%v, policies %v)", d.Cfg.AuthMethod, ttl, s.Auth.Renewable, s.Auth.Policies), "")
	return true
}

func loginFix(c *config.Config) string {
	switch c.AuthMethod {
	case config.AuthKubernetes:
		return fmt.Sprintf("check that role %q on auth/%s binds this service account and namespace, that its audience matches the token's, and that Vault can reach the apiserver's TokenReview API", c.AuthRole, c.AuthMount)
	case config.AuthJWT:
		return fmt.Sprintf("check that role %q on auth/%s has the JWT's audience in bound_audiences and matches its subject, that the mount holds the issuer's current keys, and that %s holds a fresh JWT", c.AuthRole, c.AuthMount, c.SATokenFile)
	case config.AuthAppRole:
		return fmt.Sprintf("check VAULT_KMS_APPROLE_ROLE_ID and the secret_id in %s (expired or used up?) on auth/%s", c.AppRoleSecretIDFile, c.AuthMount)
	case config.AuthCert:
		return fmt.Sprintf("check that VAULT_CLIENT_CERT is trusted by a role on auth/%s and that Vault's listener asks for client certificates", c.AuthMount)
	}
	return "check that the token (VAULT_TOKEN or VAULT_KMS_TOKEN_FILE) exists, is not expired and has the plugin's policy"
}
