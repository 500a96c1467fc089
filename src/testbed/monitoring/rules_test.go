package monitoring

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/promqltest"
)

// The chart's alert expressions, evaluated by Prometheus's own engine on
// series shaped as the plugin exports them, pick out the plugins they are
// about and no others. (The rules' for: durations are Prometheus's
// business and are not evaluated here.)
func TestAlertExpressionsSelectTheTroubledPlugins(t *testing.T) {
	ruleFile, _ := renderMonitoring(t)
	exprs := map[string]string{}
	for _, g := range parseRules(t, ruleFile).Groups {
		for _, r := range g.Rules {
			exprs[r.Alert] = r.Expr
		}
	}
	// The labels the chart's ServiceMonitor target gives every series.
	const target = `job="vault-kms-plugin-metrics", namespace="kube-system"`
	for _, tc := range []struct {
		alert  string
		series string // promqltest "load 1m" lines, 21 samples: 0m to 20m
		want   []string
	}{
		{"VaultKMSPluginDown", `
up{` + target + `, instance="a"} 1x20
up{` + target + `, instance="b"} 0x20
up{job="other", namespace="kube-system", instance="c"} 0x20`, []string{"b"}},
		{"VaultKMSPluginNotReady", `
vault_kms_plugin_ready{` + target + `, instance="a"} 1x20
vault_kms_plugin_ready{` + target + `, instance="b"} 0x20`, []string{"b"}},
		{"VaultKMSPluginLoginFailures", `
vault_kms_plugin_vault_logins_total{` + target + `, instance="a", outcome="ok"} 0+1x20
vault_kms_plugin_vault_logins_total{` + target + `, instance="a", outcome="permission_denied"} 0x20
vault_kms_plugin_vault_logins_total{` + target + `, instance="b", outcome="ok"} 1x20
vault_kms_plugin_vault_logins_total{` + target + `, instance="b", outcome="permission_denied"} 0+1x20`, []string{"b"}},
		{"VaultKMSPluginKeySnapshotStale", `
vault_kms_plugin_key_snapshot_age_seconds{` + target + `, instance="a"} 0+5x20
vault_kms_plugin_key_snapshot_age_seconds{` + target + `, instance="b"} 0+60x20`, []string{"b"}},
		{"VaultKMSPluginErrorRatioHigh", `
vault_kms_plugin_grpc_requests_total{` + target + `, instance="a", api="v2", method="Encrypt", code="OK"} 0+1000x20
vault_kms_plugin_grpc_requests_total{` + target + `, instance="a", api="v2", method="Encrypt", code="Unavailable"} 0+1x20
vault_kms_plugin_grpc_requests_total{` + target + `, instance="a", api="v2", method="Status", code="Unavailable"} 0+100x20
vault_kms_plugin_grpc_requests_total{` + target + `, instance="b", api="v2", method="Encrypt", code="OK"} 0+80x20
vault_kms_plugin_grpc_requests_total{` + target + `, instance="b", api="v2", method="Decrypt", code="InvalidArgument"} 0+20x20`, []string{"b"}},
		{"VaultKMSPluginKeyIDMismatch", `
vault_kms_plugin_key_id_info{` + target + `, instance="a", key_id_hash="aaaaaaaaaaaa"} 1x20
vault_kms_plugin_key_id_info{` + target + `, instance="b", key_id_hash="aaaaaaaaaaaa"} 1x20
vault_kms_plugin_key_id_info{` + target + `, instance="c", key_id_hash="bbbbbbbbbbbb"} 1x20`, []string{""}},
		{"VaultKMSPluginKeyIDMismatch", `
vault_kms_plugin_key_id_info{` + target + `, instance="a", key_id_hash="aaaaaaaaaaaa"} 1x20
vault_kms_plugin_key_id_info{` + target + `, instance="b", key_id_hash="aaaaaaaaaaaa"} 1x20`, nil},
	} {
		t.Run(tc.alert, func(t *testing.T) {
			expr, ok := exprs[tc.alert]
			if !ok {
				t.Fatalf("the chart renders no alert %s", tc.alert)
			}
			if got := firing(t, tc.series, expr); !slices.Equal(got, tc.want) {
				t.Errorf("fires for instances %q, want %q (\"\": one alert for the job)\n\t%s", got, tc.want, expr)
			}
		})
	}
}

// firing evaluates expr at 20m over series and returns the instance label
// of each result, sorted.
func firing(t *testing.T, series, expr string) []string {
	t.Helper()
	storage := promqltest.LoadedStorage(t, "load 1m\n"+strings.TrimSpace(series))
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1_000_000)
	q, err := engine.NewInstantQuery(context.Background(), storage, nil, expr, time.Unix(0, 0).Add(20*time.Minute))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	defer q.Close()
	vec, err := q.Exec(context.Background()).Vector()
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	var out []string
	for _, s := range vec {
		out = append(out, s.Metric.Get("instance"))
	}
	slices.Sort(out)
	return out
}
