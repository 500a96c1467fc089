package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// sample is one series as a scrape would show it.
type sample struct {
	labels map[string]string
	value  float64
}

// series gathers the samples of the metric named name (without the
// vault_kms_plugin_ prefix) from reg.
func series(t *testing.T, reg *prometheus.Registry, name string) []sample {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var out []sample
	for _, f := range families {
		if f.GetName() != "vault_kms_plugin_"+name {
			continue
		}
		for _, m := range f.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

// vaultRequests is vault_requests_total by operation and outcome, as
// "operation/outcome".
func vaultRequests(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	counts := map[string]float64{}
	for _, s := range series(t, reg, "vault_requests_total") {
		counts[s.labels["operation"]+"/"+s.labels["outcome"]] = s.value
	}
	return counts
}
