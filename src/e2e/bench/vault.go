package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// Names in the benchmark's Vault.
const (
	transitMount = "transit"
	keyName      = "bench"
)

// The transports to Vault that every plugin-versus-Vault figure is
// measured over.
const (
	viaHTTP = "HTTP" // plain HTTP/1.1, as a dev server serves
	viaTLS  = "TLS"  // https with a serving certificate, and so HTTP/2, as production Vault serves
)

var transports = []string{viaHTTP, viaTLS}

// vaultServer is a Vault dev server on 127.0.0.1 with transit, the key
// "bench" and a file audit device that counts Vault requests. It listens
// twice: plain HTTP, and TLS with a serving certificate from the bench's
// own CA; one process, storage and audit log serve both transports.
type vaultServer struct {
	*testvault.Server
	audit *auditLog
}

// startVault starts the test bed's Vault as the tests do, and stops it
// when the benchmark ends. The CA and Vault's certificate go to dir.
func startVault(h *harness.Program, dir string) *vaultServer {
	pki := bed.NewPKI(h, dir)
	cert, key := pki.Issue(h, "vault", bed.ServingTemplate("vault", "localhost"))
	s := testvault.Start(h, testvault.Options{ExtraTLS: &testvault.ServingCert{CertFile: cert, KeyFile: key, CAFile: pki.CAFile}})
	s.EnableTransit(transitMount, keyName)
	auditPath := filepath.Join(s.Dir, "audit.log")
	s.EnableFileAudit(auditPath)
	return &vaultServer{Server: s, audit: &auditLog{path: auditPath}}
}

// env is the VAULT_* settings of a client of Vault over via.
func (v *vaultServer) env(via string) []string {
	if via == viaTLS {
		return []string{"VAULT_ADDR=" + v.ExtraAddr, "VAULT_CACERT=" + v.ExtraCACert, "VAULT_TOKEN=" + v.RootToken}
	}
	return []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + v.RootToken}
}

// client is a root client over via whose pool keeps conns idle
// connections, without retries: what a well-configured direct caller of
// transit uses. Over TLS it is vault/api's own TLS set-up, and so HTTP/2.
func (v *vaultServer) client(via string, conns int, timeout time.Duration) (*api.Client, error) {
	cfg := v.Config()
	if via == viaTLS {
		cfg = v.ExtraConfig()
	}
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Timeout = timeout
	t := cfg.HttpClient.Transport.(*http.Transport)
	t.MaxIdleConns = conns
	t.MaxIdleConnsPerHost = conns
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(v.RootToken)
	c.ClearNamespace()
	return c, nil
}

// protocol is the HTTP protocol c and Vault agree on, such as "HTTP/2.0".
func protocol(ctx context.Context, c *api.Client) (string, error) {
	//nolint:staticcheck // the raw response is what holds the protocol
	res, err := c.RawRequestWithContext(ctx, c.NewRequest(http.MethodGet, "/v1/sys/health"))
	if err != nil {
		return "", fmt.Errorf("Vault's health at %s: %w", c.Address(), err)
	}
	defer res.Body.Close()
	return res.Proto, nil
}

var buildDate = regexp.MustCompile(`, built \S+`)

// vaultVersion is the first line of `vault version`.
func vaultVersion(ctx context.Context, bin string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "version")
	cmd.Env = procs.Env()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", bin, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	// A build without a stamped date (such as the test bed's) makes one up
	// from the clock; it would differ on every run, so leave it out.
	return buildDate.ReplaceAllString(line, ""), nil
}
