// Package vault talks to Vault: the client, the token's lifecycle and the
// transit calls the KMS service needs.
package vault

import (
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"
)

// NewClient builds a Vault client from the standard VAULT_* variables.
// maxConns sizes the idle pool: vault/api's default keeps only a handful of
// idle connections, so concurrent calls would otherwise open new ones.
// wrap, if not nil, wraps the HTTP transport (to count requests).
func NewClient(timeout time.Duration, maxConns int, wrap func(http.RoundTripper) http.RoundTripper) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("read VAULT_* settings: %w", cfg.Error)
	}
	// The apiserver retries on its own schedule; retrying here would only
	// push a failing call past the apiserver's deadline.
	cfg.MaxRetries = 0
	cfg.Timeout = timeout
	if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = maxConns
		t.MaxIdleConns = maxConns
	}
	if wrap != nil {
		cfg.HttpClient.Transport = wrap(cfg.HttpClient.Transport)
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Vault client for %s: %w", cfg.Address, err)
	}
	return c, nil
}
