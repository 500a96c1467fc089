package testvault

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"time"

	"github.com/hashicorp/vault/api"
)

// JWTIssuer signs RS256 JWTs with a key of its own, which a jwt auth
// mount can be told to trust: what a cluster's service-account issuer is
// to Vault, without a cluster.
type JWTIssuer struct{ key *rsa.PrivateKey }

// NewJWTIssuer makes an issuer with a fresh key.
func NewJWTIssuer(t TB) *JWTIssuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &JWTIssuer{k}
}

// PublicKeyPEM is the issuer's public key, as jwt_validation_pubkeys takes it.
func (i *JWTIssuer) PublicKeyPEM(t TB) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&i.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Sign makes a JWT for subject and audience that expires at exp.
func (i *JWTIssuer) Sign(t TB, subject, audience string, exp time.Time) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	// Issued a minute ago, so that a Vault whose clock is a little behind
	// does not find it not valid yet.
	issued := time.Now().Add(-time.Minute).Unix()
	signed := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": "https://issuer.test", "sub": subject, "aud": []string{audience},
		"iat": issued, "nbf": issued, "exp": exp.Unix(),
	})
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, i.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// EnableJWTAuth mounts the jwt method at mount, trusting issuer's key,
// with role for tokens of audience, which gets policies; the token's sub
// claim names the Vault entity.
func (s *Server) EnableJWTAuth(mount string, issuer *JWTIssuer, role, audience string, policies ...string) {
	s.t.Helper()
	if err := s.Client().Sys().EnableAuthWithOptions(mount, &api.EnableAuthOptions{Type: "jwt"}); err != nil {
		s.t.Fatalf("enable jwt auth at %s: %v", mount, err)
	}
	s.Write("auth/"+mount+"/config", map[string]any{"jwt_validation_pubkeys": []string{issuer.PublicKeyPEM(s.t)}})
	s.Write("auth/"+mount+"/role/"+role, map[string]any{
		"role_type":       "jwt",
		"bound_audiences": []string{audience},
		"user_claim":      "sub",
		"token_policies":  policies,
		"token_ttl":       "1h",
	})
}
