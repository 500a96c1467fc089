package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// prometheusRule is monitoring.coreos.com/v1 PrometheusRule as far as the
// chart uses it; decoding into it strictly catches a misspelt field.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type alertRule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// chartAlerts are the alerts the chart ships, in the order it renders them.
var chartAlerts = []string{
	"VaultKMSPluginDown", "VaultKMSPluginNotReady", "VaultKMSPluginLoginFailures",
	"VaultKMSPluginKeySnapshotStale", "VaultKMSPluginErrorRatioHigh", "VaultKMSPluginKeyIDMismatch",
}

const monitoringOn = `
metrics:
  prometheusRule:
    enabled: true
  dashboard:
    enabled: true
`

func withValues(t *testing.T, extra string) map[string]any {
	t.Helper()
	vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
	for k, v := range valuesYAML(t, extra) {
		vals[k] = v
	}
	return vals
}

func rules(r *rendered) map[string]alertRule {
	out := map[string]alertRule{}
	for _, pr := range all[*prometheusRule](r, "PrometheusRule") {
		for _, g := range pr.Spec.Groups {
			for _, rule := range g.Rules {
				out[rule.Alert+rule.Record] = rule
			}
		}
	}
	return out
}

func dashboards(r *rendered) []*corev1.ConfigMap {
	var out []*corev1.ConfigMap
	for _, cm := range all[*corev1.ConfigMap](r, "ConfigMap") {
		if strings.HasSuffix(cm.Name, "-dashboard") {
			out = append(out, cm)
		}
	}
	return out
}

// Both toggles are off by default, and a static pod renders neither: its
// output is the one manifest the kubelet reads.
func TestMonitoringObjectsFollowTheirToggles(t *testing.T) {
	for _, tc := range []struct {
		name            string
		values          string
		rule, dashboard bool
	}{
		{"defaults", "{}", false, false},
		{"rules only", "metrics: {prometheusRule: {enabled: true}}", true, false},
		{"dashboard only", "metrics: {dashboard: {enabled: true}}", false, true},
		{"both", monitoringOn, true, true},
		{"both, static pod", monitoringOn + "staticPod: {enabled: true}\nauth: {method: token, token: {tokenFile: /t/token}}\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, withValues(t, tc.values))
			if got := len(all[*prometheusRule](r, "PrometheusRule")); got != map[bool]int{true: 1}[tc.rule] {
				t.Errorf("%d PrometheusRules, want rendered=%v", got, tc.rule)
			}
			if got := len(dashboards(r)); got != map[bool]int{true: 1}[tc.dashboard] {
				t.Errorf("%d dashboard ConfigMaps, want rendered=%v", got, tc.dashboard)
			}
		})
	}
}

func TestPrometheusRule(t *testing.T) {
	runbooks := readFile(t, "docs/runbooks.md")
	for _, tc := range []struct {
		name   string
		values string
		check  func(t *testing.T, pr *prometheusRule, byName map[string]alertRule)
	}{
		{"defaults", monitoringOn, func(t *testing.T, pr *prometheusRule, byName map[string]alertRule) {
			var names []string
			for _, g := range pr.Spec.Groups {
				for _, r := range g.Rules {
					names = append(names, r.Alert)
				}
			}
			if !slices.Equal(names, chartAlerts) {
				t.Errorf("alerts %v, want %v", names, chartAlerts)
			}
			// The default selector is what the chart's ServiceMonitor
			// scrapes: Prometheus Operator's job is the Service's name.
			sel := `job="vault-kms-plugin-metrics", namespace="kube-system"`
			for name, r := range byName {
				if !strings.Contains(r.Expr, sel) {
					t.Errorf("%s: expr %q does not select %s", name, r.Expr, sel)
				}
				if r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("%s: for %q, labels %v, annotations %v: want for, severity, summary and description", name, r.For, r.Labels, r.Annotations)
				}
				anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], "https://github.com/vault-kms-plugin/vault-kms-plugin/blob/main/docs/runbooks.md#")
				if !ok || !slices.Contains(headingAnchors(runbooks), anchor) {
					t.Errorf("%s: runbook_url %q is not an anchor of docs/runbooks.md", name, r.Annotations["runbook_url"])
				}
			}
			if got := byName["VaultKMSPluginErrorRatioHigh"].Expr; !strings.Contains(got, "> 0.05") {
				t.Errorf("error ratio expr %q, want the default threshold 0.05", got)
			}
			if got := byName["VaultKMSPluginKeySnapshotStale"].Expr; !strings.HasSuffix(got, "> 300") {
				t.Errorf("stale snapshot expr %q, want the default threshold 300", got)
			}
		}},
		{"labels, thresholds, a rule off, extra rules and a selector", `
metrics:
  prometheusRule:
    enabled: true
    additionalLabels: {release: kube-prometheus}
    alertLabels: {team: platform}
    selector: 'job="kms", cluster="prod"'
    runbookURL: https://wiki.example.com/kms
    rules:
      errorRatio: {threshold: 0.2, for: 30m, severity: critical}
      keySnapshotStale: {thresholdSeconds: 900}
      loginFailures: {enabled: false}
    extraRules:
      - alert: VaultKMSPluginSlow
        expr: histogram_quantile(0.99, sum by (le) (rate(vault_kms_plugin_grpc_request_duration_seconds_bucket[5m]))) > 1
        for: 10m
        labels: {severity: warning}
`, func(t *testing.T, pr *prometheusRule, byName map[string]alertRule) {
			if pr.Labels["release"] != "kube-prometheus" || pr.Labels["app.kubernetes.io/name"] != "vault-kms-plugin" {
				t.Errorf("PrometheusRule labels %v: want additionalLabels beside the chart's", pr.Labels)
			}
			if _, ok := byName["VaultKMSPluginLoginFailures"]; ok {
				t.Error("loginFailures.enabled=false still renders the alert")
			}
			if r := byName["VaultKMSPluginSlow"]; r.For != "10m" || r.Labels["severity"] != "warning" {
				t.Errorf("extra rule rendered as %+v", r)
			}
			er := byName["VaultKMSPluginErrorRatioHigh"]
			if !strings.Contains(er.Expr, "> 0.2") || er.For != "30m" || er.Labels["severity"] != "critical" {
				t.Errorf("error ratio with threshold 0.2, for 30m, critical: %+v", er)
			}
			if got := byName["VaultKMSPluginKeySnapshotStale"].Expr; !strings.HasSuffix(got, "> 900") {
				t.Errorf("stale snapshot expr %q, want threshold 900", got)
			}
			for name, r := range byName {
				if name == "VaultKMSPluginSlow" {
					continue
				}
				if !strings.Contains(r.Expr, `job="kms", cluster="prod"`) || strings.Contains(r.Expr, "kube-system") {
					t.Errorf("%s: expr %q, want the selector in place of the default", name, r.Expr)
				}
				if r.Labels["team"] != "platform" {
					t.Errorf("%s: labels %v, want alertLabels", name, r.Labels)
				}
				if !strings.HasPrefix(r.Annotations["runbook_url"], "https://wiki.example.com/kms#") {
					t.Errorf("%s: runbook_url %q, want it under runbookURL", name, r.Annotations["runbook_url"])
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, withValues(t, tc.values))
			tc.check(t, one[*prometheusRule](t, r, "PrometheusRule"), rules(r))
		})
	}
}

// headingAnchors are the anchors GitHub gives a Markdown file's headings.
func headingAnchors(md string) []string {
	var out []string
	strip := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(md, -1) {
		out = append(out, strings.ReplaceAll(strip.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-"))
	}
	return out
}

func TestDashboardConfigMap(t *testing.T) {
	file, err := os.ReadFile(filepath.Join(chartDir(t), "dashboards", "vault-kms-plugin.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, values        string
		namespace, key, val string
		annotations         map[string]string
	}{
		{"defaults", monitoringOn, namespace, "grafana_dashboard", "1", nil},
		{"label, namespace and folder", `
metrics:
  dashboard:
    enabled: true
    namespace: monitoring
    labelKey: example.com/dashboard
    labelValue: "true"
    annotations: {grafana_folder: Kubernetes}
`, "monitoring", "example.com/dashboard", "true", map[string]string{"grafana_folder": "Kubernetes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := withValues(t, tc.values)
			lintStrict(t, vals)
			r := render(t, vals)
			cms := dashboards(r)
			if len(cms) != 1 {
				t.Fatalf("%d dashboard ConfigMaps, want 1", len(cms))
			}
			cm := cms[0]
			if cm.Namespace != tc.namespace || cm.Labels[tc.key] != tc.val || cm.Labels["app.kubernetes.io/instance"] != releaseName {
				t.Errorf("ConfigMap %s/%s labels %v: want namespace %s and %s=%q beside the chart's labels", cm.Namespace, cm.Name, cm.Labels, tc.namespace, tc.key, tc.val)
			}
			for k, v := range tc.annotations {
				if cm.Annotations[k] != v {
					t.Errorf("annotations %v, want %s=%s", cm.Annotations, k, v)
				}
			}
			got := cm.Data["vault-kms-plugin.json"]
			if strings.TrimSpace(got) != strings.TrimSpace(string(file)) {
				t.Error("the ConfigMap's dashboard differs from dashboards/vault-kms-plugin.json")
			}
			var dash struct {
				UID    string `json:"uid"`
				Panels []struct {
					Title string `json:"title"`
				} `json:"panels"`
			}
			if err := json.Unmarshal([]byte(got), &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
				t.Errorf("the dashboard is not a Grafana dashboard (uid %q, %d panels): %v", dash.UID, len(dash.Panels), err)
			}
		})
	}
}

// The linter stays clean, warnings included, with every monitoring object
// on and with its settings changed.
func TestMonitoringLint(t *testing.T) {
	for _, v := range []string{monitoringOn, `
metrics:
  serviceMonitor: {enabled: true}
  prometheusRule:
    enabled: true
    additionalLabels: {release: prom}
    rules: {keyIDMismatch: {enabled: false}}
    extraRules: [{record: "vault_kms_plugin:errors:rate5m", expr: "sum(rate(vault_kms_plugin_grpc_requests_total{code!=\"OK\"}[5m]))"}]
  dashboard: {enabled: true, labelValue: "yes"}
`} {
		lintStrict(t, withValues(t, v))
	}
}

// A bad setting is refused by the schema, naming the key.
func TestMonitoringBadValues(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"metrics: {prometheusRule: {rules: {errorRatio: {threshold: 5}}}}", "/metrics/prometheusRule/rules/errorRatio/threshold"},
		{"metrics: {prometheusRule: {rules: {pluginDown: {for: soon}}}}", "/metrics/prometheusRule/rules/pluginDown/for"},
		{"metrics: {prometheusRule: {rules: {typo: {}}}}", "typo"},
		{"metrics: {dashboard: {labelKey: ''}}", "/metrics/dashboard/labelKey"},
		{"metrics: {prometheusRule: {extraRules: [{alert: NoExpr}]}}", "expr"},
	} {
		t.Run(tc.values, func(t *testing.T) {
			_, err := install(loadChart(t), withValues(t, tc.values), kubeVersion)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("install: %v; want an error naming %s", err, tc.want)
			}
		})
	}
}
