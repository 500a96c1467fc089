package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// Transport wraps the Vault client's HTTP transport and counts and times
// every request Vault sees, batches and logins included.
func (m *Metrics) Transport(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		res, err := next.RoundTrip(r)
		op := operation(r.URL.Path)
		m.vaultRequests.WithLabelValues(op, vault.KindOfResponse(res, err).String()).Inc()
		m.vaultLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
		return res, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// operation names a Vault API path by what it does; the mount and key
// names are left out to keep the label bounded.
func operation(path string) string {
	switch {
	case strings.Contains(path, "/encrypt/"):
		return "encrypt"
	case strings.Contains(path, "/decrypt/"):
		return "decrypt"
	case strings.Contains(path, "/keys/"):
		return "read_key"
	case strings.HasSuffix(path, "/renew-self"):
		return "renew"
	case strings.HasSuffix(path, "/lookup-self"):
		return "lookup"
	case strings.HasSuffix(path, "/login"):
		return "login"
	case strings.HasSuffix(path, "/sys/health"):
		return "health"
	}
	return "other"
}
