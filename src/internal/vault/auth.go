package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"
)

// A Login obtains a token. Every call reads its credential files again, so
// a rotated service-account token or secret_id is picked up at the next login.
type Login interface {
	api.AuthMethod
	// CanLoginAgain reports whether a new login can replace a token that
	// Vault rejects (false for a token given as a value).
	CanLoginAgain() bool
	// CreatesToken reports whether each login creates a token of the
	// plugin's own, revoked once a new login replaces it. A token given as
	// a value or in a file belongs to someone else (Vault Agent, say).
	CreatesToken() bool
}

// StaticToken is a token given as a value: "logging in" checks it is alive.
type StaticToken struct{ Token string }

func (s StaticToken) CanLoginAgain() bool { return false }
func (s StaticToken) CreatesToken() bool  { return false }

func (s StaticToken) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	return lookupSelf(ctx, c, s.Token)
}

// TokenFile is a token read from a file, such as a Vault Agent sink.
type TokenFile struct{ Path string }

func (f TokenFile) CanLoginAgain() bool { return true }
func (f TokenFile) CreatesToken() bool  { return false }

func (f TokenFile) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("read token file (VAULT_KMS_TOKEN_FILE): %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("token file %s (VAULT_KMS_TOKEN_FILE) is empty", f.Path)
	}
	return lookupSelf(ctx, c, tok)
}

// Fingerprint identifies the file's current content without reading it, so
// that the session can poll it cheaply (a Vault Agent sink is replaced by
// rename, which changes the modification time).
func (f TokenFile) Fingerprint() string {
	fi, err := os.Stat(f.Path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d/%d", fi.ModTime().UnixNano(), fi.Size())
}

// lookupSelf turns a bare token into a Secret with its TTL, so that the same
// renewal code serves tokens and logins.
func lookupSelf(ctx context.Context, c *api.Client, token string) (*api.Secret, error) {
	s, err := withToken(c, token).Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	if s == nil || s.Data == nil {
		return nil, errors.New("look up token: Vault returned no data")
	}
	ttl, err := s.TokenTTL()
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	renewable, _ := s.TokenIsRenewable()
	lease := int(ttl.Seconds())
	if lease <= 0 && s.Data["expire_time"] != nil {
		// Under a second left: not a token that never expires.
		lease = 1
	}
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   token,
		Renewable:     renewable,
		LeaseDuration: lease,
	}}, nil
}

// Kubernetes logs in with the pod's service-account JWT.
type Kubernetes struct{ Role, Mount, JWTFile string }

func (k Kubernetes) CanLoginAgain() bool { return true }
func (k Kubernetes) CreatesToken() bool  { return true }

func (k Kubernetes) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	// The library reads the file when the method is built, so build it per
	// login: a projected token is rotated by the kubelet.
	m, err := kubernetes.NewKubernetesAuth(k.Role,
		kubernetes.WithMountPath(k.Mount),
		kubernetes.WithServiceAccountTokenPath(k.JWTFile))
	if err != nil {
		return nil, fmt.Errorf("kubernetes auth (VAULT_KMS_SA_TOKEN_FILE=%s): %w", k.JWTFile, err)
	}
	return m.Login(ctx, c)
}

// AppRole logs in with a role_id and a secret_id read from a file.
type AppRole struct{ RoleID, Mount, SecretIDFile string }

func (a AppRole) CanLoginAgain() bool { return true }
func (a AppRole) CreatesToken() bool  { return true }

func (a AppRole) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	m, err := approle.NewAppRoleAuth(a.RoleID, &approle.SecretID{FromFile: a.SecretIDFile}, approle.WithMountPath(a.Mount))
	if err != nil {
		return nil, fmt.Errorf("approle auth (VAULT_KMS_APPROLE_SECRET_ID_FILE=%s): %w", a.SecretIDFile, err)
	}
	s, err := m.Login(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("approle login: %w", err)
	}
	return s, nil
}

// Cert logs in with the TLS client certificate of VAULT_CLIENT_CERT.
type Cert struct{ Role, Mount string }

func (a Cert) CanLoginAgain() bool { return true }
func (a Cert) CreatesToken() bool  { return true }

func (a Cert) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	body := map[string]any{}
	if a.Role != "" {
		body["name"] = a.Role
	}
	s, err := c.Logical().WriteWithContext(ctx, "auth/"+a.Mount+"/login", body)
	if err != nil {
		return nil, fmt.Errorf("cert login: %w", err)
	}
	return s, nil
}
