package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/vault/api"
)

// JWT logs in with Vault's jwt auth method: Vault checks the token's
// signature against keys it holds (the cluster's JWKS, or its issuer's
// discovery document), so it never asks the apiserver to review it. The
// file is read at every login: a projected token, or the file a hosted
// control plane or SPIFFE agent writes, is replaced as it nears expiry.
//
// It has no Fingerprint, unlike TokenFile: a new JWT does not make the
// Vault token it bought any less valid, so a rotation waits for the next
// login instead of costing one.
type JWT struct{ Role, Mount, JWTFile string }

func (j JWT) CanLoginAgain() bool { return true }
func (j JWT) CreatesToken() bool  { return true }

func (j JWT) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	jwt, err := j.read()
	if err != nil {
		return nil, err
	}
	s, err := c.Logical().WriteWithContext(ctx, "auth/"+j.Mount+"/login", map[string]any{
		"role": j.Role,
		"jwt":  jwt,
	})
	if err != nil {
		return nil, j.explain(err)
	}
	return s, nil
}

// read returns the file's JWT. Its errors never quote the content: a
// half-written file may still be most of a valid token.
func (j JWT) read() (string, error) {
	b, err := os.ReadFile(j.JWTFile)
	if err != nil {
		return "", fmt.Errorf("read the JWT for jwt auth (VAULT_KMS_SA_TOKEN_FILE=%s): %w; point VAULT_KMS_SA_TOKEN_FILE at the file that holds the JWT", j.JWTFile, err)
	}
	jwt := strings.TrimSpace(string(b))
	if jwt == "" {
		return "", fmt.Errorf("JWT file %s (VAULT_KMS_SA_TOKEN_FILE) is empty: whatever writes it (the kubelet's projected token, a hosted control plane, a SPIFFE agent) has not written it yet", j.JWTFile)
	}
	if strings.Count(jwt, ".") != 2 {
		return "", fmt.Errorf("JWT file %s (VAULT_KMS_SA_TOKEN_FILE) does not hold a JWT (three base64url parts joined by dots): point VAULT_KMS_SA_TOKEN_FILE at the token file itself", j.JWTFile)
	}
	return jwt, nil
}

// explain turns Vault's refusal into an error that keeps Vault's reason
// and says what to change. Vault's reasons quote claims at most, never the
// JWT, and the request's body is not part of a ResponseError.
func (j JWT) explain(err error) error {
	var re *api.ResponseError
	if !errors.As(err, &re) || re.StatusCode >= 500 {
		return fmt.Errorf("jwt login with role %q on auth/%s: %w", j.Role, j.Mount, err)
	}
	return &jwtRefusal{
		msg: fmt.Sprintf("jwt login with role %q on auth/%s (JWT from %s, VAULT_KMS_SA_TOKEN_FILE) refused by Vault (HTTP %d): %s; %s",
			j.Role, j.Mount, j.JWTFile, re.StatusCode, strings.Join(re.Errors, "; "), jwtFix(re.Errors, j)),
		cause: re,
	}
}

// jwtFix is the change that most likely cures the refusal Vault gave.
func jwtFix(reasons []string, j JWT) string {
	reason := strings.ToLower(strings.Join(reasons, " "))
	switch {
	case strings.Contains(reason, "audience"), strings.Contains(reason, "aud claim"):
		return fmt.Sprintf("the JWT's audience must be one of role %q's bound_audiences: request the token with that audience (chart: auth.audience) or add the token's audience to the role", j.Role)
	case strings.Contains(reason, "expired"), strings.Contains(reason, "not valid yet"), strings.Contains(reason, "before"):
		return "the JWT is outside its validity window: check that whatever writes the file refreshes it, and that the clocks of this node and Vault agree"
	case strings.Contains(reason, "signature"), strings.Contains(reason, "no known key"), strings.Contains(reason, "verify"):
		return fmt.Sprintf("Vault cannot verify the JWT's signature: configure auth/%s/config with the issuer's current keys (jwt_validation_pubkeys, jwks_url or oidc_discovery_url) after a key rotation", j.Mount)
	case strings.Contains(reason, "role") && (strings.Contains(reason, "not found") || strings.Contains(reason, "could not be found")):
		return fmt.Sprintf("create role %q on auth/%s, or set VAULT_KMS_AUTH_ROLE to an existing one", j.Role, j.Mount)
	case strings.Contains(reason, "claim"), strings.Contains(reason, "subject"):
		return fmt.Sprintf("the JWT's claims do not match role %q's bound_subject or bound_claims, or lack its user_claim: compare them with the role", j.Role)
	case strings.Contains(reason, "unsupported path"), strings.Contains(reason, "no handler"):
		return fmt.Sprintf("enable the jwt auth method at auth/%s, or set VAULT_KMS_AUTH_MOUNT to where it is mounted", j.Mount)
	}
	return fmt.Sprintf("compare role %q on auth/%s with the JWT's claims", j.Role, j.Mount)
}

// jwtRefusal is Vault's refusal of a jwt login, worded for the operator,
// that still classifies as the ResponseError it came from.
type jwtRefusal struct {
	msg   string
	cause *api.ResponseError
}

func (e *jwtRefusal) Error() string { return e.msg }
func (e *jwtRefusal) Unwrap() error { return e.cause }
