package vault_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

const jwtAudience = "vault-kms"

// jwtIssuer signs RS256 tokens with a key whose public half a Vault jwt
// mount trusts.
type jwtIssuer struct{ key *rsa.PrivateKey }

func newJWTIssuer(t *testing.T) jwtIssuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return jwtIssuer{k}
}

func (i jwtIssuer) publicPEM(t *testing.T) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&i.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// sign makes a JWT for subject and audience that expires at exp.
func (i jwtIssuer) sign(t *testing.T, subject, audience string, exp time.Time) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	now := time.Now()
	signed := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": "https://issuer.test", "sub": subject, "aud": []string{audience},
		"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": exp.Unix(),
	})
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, i.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// setupJWT enables a jwt mount on v that trusts issuer, with role "kms"
// for audience jwtAudience, and returns a login reading a file that
// holds a valid token.
func setupJWT(t *testing.T, v *testvault.Server, issuer jwtIssuer) (vault.JWT, string) {
	t.Helper()
	setupKMS(v)
	if err := v.Client().Sys().EnableAuthWithOptions("jwt", &api.EnableAuthOptions{Type: "jwt"}); err != nil {
		t.Fatal(err)
	}
	v.Write("auth/jwt/config", map[string]any{"jwt_validation_pubkeys": []string{issuer.publicPEM(t)}})
	v.Write("auth/jwt/role/kms", map[string]any{
		"role_type":       "jwt",
		"bound_audiences": []string{jwtAudience},
		"user_claim":      "sub",
		"token_policies":  []string{"kms"},
		"token_ttl":       "1h",
	})
	jwt := issuer.sign(t, "system:serviceaccount:kube-system:vault-kms-plugin", jwtAudience, time.Now().Add(time.Hour))
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
	login, jwt := setupJWT(t, v, newJWTIssuer(t))
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
	issuer := newJWTIssuer(t)
	good, _ := setupJWT(t, v, issuer)
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content *string // nil: no file at all
		role    string
		want    []string
	}{
		{"wrong audience", new(issuer.sign(t, "sa", "kubernetes", time.Now().Add(time.Hour))), "kms",
			[]string{"refused by Vault (HTTP 400)", "audience", "bound_audiences", "VAULT_KMS_SA_TOKEN_FILE"}},
		{"expired", new(issuer.sign(t, "sa", jwtAudience, time.Now().Add(-time.Minute))), "kms",
			[]string{"refused by Vault (HTTP 400)", "expired", "refreshes it"}},
		{"signed by another key", new(newJWTIssuer(t).sign(t, "sa", jwtAudience, time.Now().Add(time.Hour))), "kms",
			[]string{"refused by Vault", "signature", "auth/jwt/config"}},
		{"unknown role", new(issuer.sign(t, "sa", jwtAudience, time.Now().Add(time.Hour))), "nope",
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
	issuer := newJWTIssuer(t)
	login, _ := setupJWT(t, v, issuer)
	tr, s, obs, logs := start(t, v, login)
	eventually(t, 5*time.Second, "logged in", func() bool { return s.Err() == nil && s.Client().Token() != "" })
	first := s.Client().Token()

	rotated := issuer.sign(t, "rotated-subject", jwtAudience, time.Now().Add(time.Hour))
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
	expired := issuer.sign(t, "rotated-subject", jwtAudience, time.Now().Add(-time.Minute))
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
