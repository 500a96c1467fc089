package metrics_test

import (
	"context"
	"testing"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/metrics"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// Logins and renewals have a series per outcome from the start, so that
// an alert's increase() sees the first failure; each event moves its own.
func TestLoginAndRenewalOutcomesStartAtZero(t *testing.T) {
	for _, tc := range []struct {
		name    string
		observe func(m *metrics.Metrics)
		metric  string
		moved   string
	}{
		{"nothing yet", func(*metrics.Metrics) {}, "vault_logins_total", ""},
		{"failed login", func(m *metrics.Metrics) { m.Login(context.DeadlineExceeded) }, "vault_logins_total", "deadline_exceeded"},
		{"login", func(m *metrics.Metrics) { m.Login(nil) }, "vault_logins_total", "ok"},
		{"failed renewal", func(m *metrics.Metrics) { m.Renew(context.Canceled) }, "vault_token_renewals_total", "canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New("test")
			tc.observe(m)
			got := map[string]float64{}
			for _, s := range series(t, m.Registry, tc.metric) {
				got[s.labels["outcome"]] = s.value
			}
			for k := vault.OK; k <= vault.Internal; k++ {
				want := 0.0
				if k.String() == tc.moved {
					want = 1
				}
				if v, ok := got[k.String()]; !ok || v != want {
					t.Errorf("%s{outcome=%q} = %v (exported: %v), want %v", tc.metric, k, v, ok, want)
				}
			}
		})
	}
}
