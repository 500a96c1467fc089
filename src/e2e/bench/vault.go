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

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// Names in the benchmark's Vault.
const (
	transitMount = "transit"
	keyName      = "bench"
)

// vaultServer is a Vault dev server on 127.0.0.1 with transit, the key
// "bench" and a file audit device that counts Vault requests.
type vaultServer struct {
	*testvault.Server
	audit *auditLog
}

// startVault starts the test bed's Vault as the tests do, and stops it
// when the benchmark ends.
func startVault(h *harness.Program) *vaultServer {
	s := testvault.Start(h, testvault.Options{})
	s.EnableTransit(transitMount, keyName)
	auditPath := filepath.Join(s.Dir, "audit.log")
	s.EnableFileAudit(auditPath)
	return &vaultServer{Server: s, audit: &auditLog{path: auditPath}}
}

// client is a root client whose pool keeps conns idle connections, without
// retries: what a well-configured direct caller of transit uses.
func (v *vaultServer) client(conns int, timeout time.Duration) (*api.Client, error) {
	cfg := v.Config()
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
