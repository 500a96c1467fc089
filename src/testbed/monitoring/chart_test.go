package monitoring

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository's root, from the package's directory, where
// go test runs.
const repoRoot = "../../.."

// renderMonitoring renders the chart with its PrometheusRule and dashboard
// on, as `helm install --dry-run` does, and returns the PrometheusRule's
// spec (a Prometheus rule file: groups) and the dashboard's JSON.
func renderMonitoring(t *testing.T) (ruleFile []byte, dashboard []byte) {
	t.Helper()
	c, err := loader.Load(filepath.Join(repoRoot, "charts", "vault-kms-plugin"))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals, err := chartutil.ReadValues([]byte(`
addr: https://vault.example.com:8200
keyNames: [kube-secrets]
metrics:
  serviceMonitor: {enabled: true}
  prometheusRule: {enabled: true}
  dashboard: {enabled: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	in := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	in.ReleaseName, in.Namespace, in.DryRun, in.ClientOnly = "vault-kms-plugin", "kube-system", true, true
	if in.KubeVersion, err = chartutil.ParseKubeVersion("v1.37.0"); err != nil {
		t.Fatal(err)
	}
	rel, err := in.Run(c, vals.AsMap())
	if err != nil {
		t.Fatalf("render the chart: %v", err)
	}
	for _, doc := range strings.Split(rel.Manifest, "\n---\n") {
		var obj struct {
			Kind string          `json:"kind"`
			Spec json.RawMessage `json:"spec"`
			Data map[string]string
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		switch {
		case obj.Kind == "PrometheusRule":
			if ruleFile, err = yaml.JSONToYAML(obj.Spec); err != nil {
				t.Fatal(err)
			}
		case obj.Kind == "ConfigMap" && obj.Data["vault-kms-plugin.json"] != "":
			dashboard = []byte(obj.Data["vault-kms-plugin.json"])
		}
	}
	if ruleFile == nil || dashboard == nil {
		t.Fatalf("the chart rendered no PrometheusRule (%t) or no dashboard ConfigMap (%t)", ruleFile == nil, dashboard == nil)
	}
	return ruleFile, dashboard
}

// query is one PromQL expression of the rules or the dashboard, and where
// it comes from.
type query struct {
	where string
	expr  parser.Expr
}

var promql = parser.NewParser(parser.Options{})

// ruleQueries parses the rule file with Prometheus's rule parser, which
// checks the groups, names, durations, templates and each expression, and
// returns every rule's expression.
func ruleQueries(t *testing.T, ruleFile []byte) []query {
	t.Helper()
	var out []query
	for _, g := range parseRules(t, ruleFile).Groups {
		for _, r := range g.Rules {
			e, err := promql.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			out = append(out, query{where: "alert " + r.Alert + r.Record, expr: e})
		}
	}
	return out
}

// Grafana's variables, replaced by what Grafana would put there, so that
// Prometheus's parser reads the query.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// dashboardQueries returns the PromQL of every panel target and of the
// template variables' label_values() queries.
func dashboardQueries(t *testing.T, dashboard []byte) []query {
	t.Helper()
	var tree any
	if err := json.Unmarshal(dashboard, &tree); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var out []query
	add := func(where, q string) {
		e, err := promql.ParseExpr(grafanaVars.Replace(q))
		if err != nil {
			t.Errorf("%s: %q: %v", where, q, err)
			return
		}
		out = append(out, query{where: where, expr: e})
	}
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				where = "panel " + title
			}
			if name, ok := v["name"].(string); ok && v["type"] == "query" {
				where = "variable " + name
			}
			for k, child := range v {
				s, isString := child.(string)
				switch {
				case k == "expr" && isString:
					add(where, s)
				case k == "query" && strings.HasPrefix(where, "variable "):
					if m, ok := child.(map[string]any); ok {
						s, _ = m["query"].(string)
					}
					if lv := labelValues.FindStringSubmatch(s); lv != nil {
						add(where, fmt.Sprintf("count by (%s) (%s)", lv[2], lv[1]))
					} else if s != "" {
						t.Errorf("%s: query %q is not label_values(metric, label)", where, s)
					}
				default:
					walk(where, child)
				}
			}
		case []any:
			for _, child := range v {
				walk(where, child)
			}
		}
	}
	walk("dashboard", tree)
	if len(out) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return out
}

// parseRules parses a rule file as Prometheus loads one, failing on any
// error.
func parseRules(t *testing.T, ruleFile []byte) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.Parse(ruleFile, false, model.UTF8Validation, promql, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, err := range errs {
		t.Errorf("rulefmt: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return groups
}
