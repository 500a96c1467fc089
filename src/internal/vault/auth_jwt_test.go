package vault_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

const jwtAudience = "vault-kms"

// setupJWT enables a jwt mount on v that trusts issuer, with role "kms"
// for audience jwtAudience, and returns a login reading a file that
// holds a valid token, and that token.
func setupJWT(t *testing.T, v *testvault.Server, issuer *testvault.JWTIssuer) (vault.JWT, string) {
	t.Helper()
	setupKMS(v)
	v.EnableJWTAuth("jwt", issuer, "kms", jwtAudience, "kms")
	jwt := issuer.Sign(t, "system:serviceaccount:kube-system:vault-kms-plugin", jwtAudience, time.Now().Add(time.Hour))
	f := filepath.Join(t.TempDir(), "token")
	writeFile(t, f, jwt+"\n")
	return vault.JWT{Role: "kms", Mount: "jwt", JWTFile: f}, jwt
}

// writeFile replaces path's content by rename, as the kubelet does.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestJWTLoginServesTransit(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	login, jwt := setupJWT(t, v, testvault.NewJWTIssuer(t))
	tr, s, obs, logs := start(t, v, login)
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil && s.Client().Token() != "" })
	roundTrip(t, tr)
	if obs.logins.Load() != 1 || obs.loginErrs.Load() != 0 {
		t.Fatalf("%d logins, %d failed; want 1 and 0", obs.logins.Load(), obs.loginErrs.Load())
	}
	self, err := s.Client().Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	if policies, _ := self.TokenPolicies(); !strings.Contains(strings.Join(policies, ","), "kms") {
		t.Fatalf("token from the jwt login has policies %v; want kms", policies)
	}
	for what, secret := range map[string]string{"JWT": jwt, "Vault token": s.Client().Token()} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the session logged the %s", what)
		}
	}
}

// TestJWTLoginRefusals: every refusal names the setting and what to fix,
// carries Vault's reason when Vault gave one, and never quotes the JWT.
func TestJWTLoginRefusals(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	issuer := testvault.NewJWTIssuer(t)
	good, _ := setupJWT(t, v, issuer)
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content *string // nil: no file at all
		role    string
		want    []string
	}{
		{"wrong audience", new(issuer.Sign(t, "sa", "kubernetes", time.Now().Add(time.Hour))), "kms",
			[]string{"refused by Vault (HTTP 400)", "audience", "bound_audiences", "VAULT_KMS_SA_TOKEN_FILE"}},
		{"expired", new(issuer.Sign(t, "sa", jwtAudience, time.Now().Add(-time.Minute))), "kms",
			[]string{"refused by Vault (HTTP 400)", "expired", "refreshes it"}},
		{"signed by another key", new(testvault.NewJWTIssuer(t).Sign(t, "sa", jwtAudience, time.Now().Add(time.Hour))), "kms",
			[]string{"refused by Vault", "signature", "auth/jwt/config"}},
		{"unknown role", new(issuer.Sign(t, "sa", jwtAudience, time.Now().Add(time.Hour))), "nope",
			[]string{"refused by Vault", `role "nope"`, "VAULT_KMS_AUTH_ROLE"}},
		{"missing file", nil, "kms", []string{"VAULT_KMS_SA_TOKEN_FILE=", "no such file"}},
		{"empty file", new(" \n"), "kms", []string{"(VAULT_KMS_SA_TOKEN_FILE) is empty"}},
		{"not a JWT", new("s.not-a-jwt-secret"), "kms", []string{"does not hold a JWT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			login := good
			login.Role = tc.role
			login.JWTFile = filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if tc.content != nil {
				writeFile(t, login.JWTFile, *tc.content)
			}
			_, err := login.Login(context.Background(), v.Client())
			if err == nil {
				t.Fatal("login succeeded")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.content != nil && strings.TrimSpace(*tc.content) != "" && strings.Contains(err.Error(), strings.TrimSpace(*tc.content)) {
				t.Errorf("error quotes the file's content: %q", err)
			}
		})
	}
}

// TestJWTFileIsReadAgainAtTheNextLogin: the kubelet replaces a projected
// token before it expires; the login after that must send the new one.
func TestJWTFileIsReadAgainAtTheNextLogin(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	issuer := testvault.NewJWTIssuer(t)
	login, _ := setupJWT(t, v, issuer)
	tr, s, obs, logs := start(t, v, login)
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil && s.Client().Token() != "" })
	first := s.Client().Token()

	rotated := issuer.Sign(t, "rotated-subject", jwtAudience, time.Now().Add(time.Hour))
	writeFile(t, login.JWTFile, rotated)
	// A revoked token makes the next call log in again, which must read
	// the file anew.
	if err := v.Client().Auth().Token().RevokeTree(first); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, tr)
	if obs.logins.Load() != 2 {
		t.Fatalf("%d logins; want 2", obs.logins.Load())
	}
	self, err := s.Client().Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	if name, _ := self.Data["display_name"].(string); !strings.Contains(name, "rotated-subject") {
		t.Fatalf("token after the rotation is %q's; want the rotated JWT's subject", name)
	}
	if strings.Contains(logs.String(), rotated) {
		t.Fatal("the session logged the JWT")
	}

	// A file that turns bad is reported with Vault's reason, not the JWT.
	expired := issuer.Sign(t, "rotated-subject", jwtAudience, time.Now().Add(-time.Minute))
	writeFile(t, login.JWTFile, expired)
	if err := v.Client().Auth().Token().RevokeTree(s.Client().Token()); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.ReadKey(context.Background(), "kube"); err == nil {
		t.Fatal("read with a revoked token and an expired JWT succeeded")
	}
	eventually(t, 5*time.Second, "the expired JWT reported", func() bool {
		err := s.Err()
		return err != nil && strings.Contains(err.Error(), "expired")
	})
	if strings.Contains(logs.String(), expired) || strings.Contains(s.Err().Error(), expired) {
		t.Fatal("the expired JWT was logged or returned")
	}
}
