package metrics

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Transport wraps the Vault client's HTTP transport and counts and times
// every request Vault sees, batches and logins included.
func (m *Metrics) Transport(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		res, err := next.RoundTrip(r)
		op := operation(r.URL.Path)
		m.vaultRequests.WithLabelValues(op, httpOutcome(res, err)).Inc()
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

func httpOutcome(res *http.Response, err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case err != nil:
		return "unavailable"
	case res.StatusCode < 300:
		return "ok"
	case res.StatusCode == http.StatusForbidden:
		return "permission_denied"
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		return "unavailable"
	}
	return "invalid_argument"
}
