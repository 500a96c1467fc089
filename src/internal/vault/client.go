// Package vault talks to Vault: the client, the token's lifecycle and the
// transit calls the KMS service needs.
package vault

import (
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"
)

// The one HTTP/2 connection to a TLS Vault carries every call. If it dies
// silently (a VIP fails over, a conntrack entry is lost), nothing arrives
// on it any more, yet Go keeps it pooled and every call waits out its
// timeout on it. A ping after a few quiet seconds finds that out and drops
// it, and the next call dials afresh. A connection with traffic never
// pings; an idle one pings every h2PingAfterQuiet, which costs Vault
// nothing worth counting.
const (
	h2PingAfterQuiet = 3 * time.Second
	h2PingTimeout    = 2 * time.Second
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
	// vault/api's own retries ignore the caller's deadline; transit calls
	// retry in retry.go, only while the caller can still use the answer.
	cfg.MaxRetries = 0
	cfg.Timeout = timeout
	if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = maxConns
		t.MaxIdleConns = maxConns
		// vault/api enables HTTP/2 with x/net's ConfigureTransport, whose
		// connections read these settings from net/http's HTTP2 config
		// when they are made (as net/http's own HTTP/2 does).
		t.HTTP2 = &http.HTTP2Config{SendPingTimeout: h2PingAfterQuiet, PingTimeout: h2PingTimeout}
	}
	var rt http.RoundTripper = retryAfterRecorder{cfg.HttpClient.Transport}
	if wrap != nil {
		rt = wrap(rt)
	}
	cfg.HttpClient.Transport = rt
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Vault client for %s: %w", cfg.Address, err)
	}
	return c, nil
}
