// Package vault talks to Vault: the client, the token's lifecycle and the
// transit calls the KMS service needs.
package vault

import (
	"crypto/tls"
	"fmt"
	"log/slog"
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

// ClientOption changes how NewClient builds the client.
type ClientOption func(*clientOptions)

type clientOptions struct {
	log *slog.Logger
}

// WithLog sends the client's own warnings (TLS files that changed but
// cannot be used) to log instead of slog's default logger.
func WithLog(log *slog.Logger) ClientOption {
	return func(o *clientOptions) { o.log = log }
}

// NewClient builds a Vault client from the standard VAULT_* variables.
// maxConns sizes the idle pool: vault/api's default keeps only a handful of
// idle connections, so concurrent calls would otherwise open new ones.
// wrap, if not nil, wraps the HTTP transport (to count requests).
//
// The TLS files (VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT,
// VAULT_CLIENT_KEY) are read again when they change: new connections use
// the new files, see rotatingTransport.
func NewClient(timeout time.Duration, maxConns int, wrap func(http.RoundTripper) http.RoundTripper, opts ...ClientOption) (*api.Client, error) {
	o := clientOptions{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	// Read the TLS files first: their errors name the setting, which
	// vault/api's do not.
	files, err := tlsFilesFromEnv()
	if err != nil {
		return nil, err
	}
	material, err := files.loadAsOf(files.stamps())
	if err != nil {
		return nil, err
	}
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("read VAULT_* settings: %w", cfg.Error)
	}
	// vault/api's own retries ignore the caller's deadline; transit calls
	// retry in retry.go, only while the caller can still use the answer.
	cfg.MaxRetries = 0
	cfg.Timeout = timeout
	base, ok := cfg.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("create Vault client: unexpected HTTP transport %T", cfg.HttpClient.Transport)
	}
	base.MaxIdleConnsPerHost = maxConns
	base.MaxIdleConns = maxConns
	base.HTTP2 = &http.HTTP2Config{SendPingTimeout: h2PingAfterQuiet, PingTimeout: h2PingTimeout}
	rotating := &rotatingTransport{files: files, build: transportFrom(base), log: o.log}
	rotating.current.Store(rotating.build(material))
	rotating.nextCheck.Store(time.Now().Add(tlsCheckEvery).UnixNano())
	var rt http.RoundTripper = retryAfterRecorder{rotating}
	if wrap != nil {
		rt = wrap(rt)
	}
	cfg.HttpClient.Transport = markCutAnswers{rt}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Vault client for %s: %w", cfg.Address, err)
	}
	return c, nil
}

// transportFrom returns a builder of transports that are base (vault/api's,
// with its proxy, timeouts and TLS settings) with the given TLS material.
func transportFrom(base *http.Transport) func(tlsMaterial) *http.Transport {
	return func(m tlsMaterial) *http.Transport {
		t := base.Clone()
		// vault/api set up x/net's HTTP/2 on base, bound to base's own
		// connection pool, which a clone would share. Each transport gets
		// net/http's HTTP/2 of its own instead, which reads the pings of
		// t.HTTP2 when it connects.
		t.TLSNextProto = nil
		t.ForceAttemptHTTP2 = true
		if m.roots != nil {
			t.TLSClientConfig.RootCAs = m.roots
		}
		if m.cert != nil {
			// Given whatever CAs Vault names, as vault/api does: the CA of
			// a cert auth role need not be in the listener's client CAs.
			cert := m.cert
			t.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return cert, nil
			}
		}
		return t
	}
}
