package monitoring

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// targetLabels are the labels Prometheus (or the Operator's relabelling)
// puts on every series of a target; the plugin does not export them.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "endpoint", "container", "cluster"}

// synthetic are the series Prometheus makes itself for every target.
var synthetic = map[string][]string{"up": nil}

// Every metric and label the chart's alerts and dashboard name is one the
// real plugin exports: a renamed metric or label would otherwise leave an
// alert that never fires and a panel that stays empty, silently.
func TestRulesAndDashboardUseExportedMetrics(t *testing.T) {
	ruleFile, dashboard := renderMonitoring(t)
	queries := append(ruleQueries(t, ruleFile), dashboardQueries(t, dashboard)...)
	exported := scrapeServingPlugin(t)

	used := map[string]bool{}
	for _, q := range queries {
		for _, problem := range check(q.expr, exported) {
			t.Errorf("%s: %s\n\t%s", q.where, problem, q.expr)
		}
		parser.Inspect(q.expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				used[metricName(vs)] = true
			}
			return nil
		})
	}
	// The check has teeth only if the queries name the plugin's metrics.
	for _, name := range []string{
		"vault_kms_plugin_ready", "vault_kms_plugin_key_id_info", "vault_kms_plugin_key_snapshot_age_seconds",
		"vault_kms_plugin_vault_logins_total", "vault_kms_plugin_grpc_requests_total",
		"vault_kms_plugin_grpc_request_duration_seconds_bucket", "vault_kms_plugin_vault_request_duration_seconds_bucket",
	} {
		if !used[name] {
			t.Errorf("no rule or panel uses %s", name)
		}
	}
	t.Logf("%d queries checked against %d exported series names", len(queries), len(exported))
}

// check lists what expr names that the plugin does not export: metrics,
// labels in selectors, and labels that aggregations group by.
func check(expr parser.Expr, exported map[string][]string) []string {
	var problems []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := metricName(n)
			have, ok := exported[name]
			if !ok {
				problems = append(problems, fmt.Sprintf("metric %s is not exported", name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != labels.MetricName && !slices.Contains(have, m.Name) && !slices.Contains(targetLabels, m.Name) {
					problems = append(problems, fmt.Sprintf("%s has no label %s (it has %v)", name, m.Name, have))
				}
			}
		case *parser.AggregateExpr:
			if n.Without {
				return nil
			}
			var have []string
			parser.Inspect(n.Expr, func(inner parser.Node, _ []parser.Node) error {
				if vs, ok := inner.(*parser.VectorSelector); ok {
					have = append(have, exported[metricName(vs)]...)
				}
				return nil
			})
			for _, l := range n.Grouping {
				if !slices.Contains(have, l) && !slices.Contains(targetLabels, l) {
					problems = append(problems, fmt.Sprintf("%s by (%s): no metric inside has the label %s", n.Op, strings.Join(n.Grouping, ", "), l))
				}
			}
		}
		return nil
	})
	return problems
}

func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName {
			return m.Value
		}
	}
	return ""
}

// scrapeServingPlugin builds the plugin, runs it against a real Vault,
// answers a Status, an Encrypt and a Decrypt so that the call series
// exist, and returns the series names /metrics exports (a histogram's as
// _bucket, _sum and _count), each with its label names.
func scrapeServingPlugin(t *testing.T) map[string][]string {
	t.Helper()
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")

	bin := filepath.Join(t.TempDir(), "vault-kms-plugin")
	build := exec.Command("go", "build", "-o", bin, "./src/cmd/vault-kms-plugin")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build the plugin: %v\n%s", err, out)
	}
	sock := filepath.Join(t.TempDir(), "kms.sock")
	health := fmt.Sprintf("127.0.0.1:%d", testvault.FreePort(t))
	plugin := exec.Command(bin)
	plugin.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + v.RootToken,
		"VAULT_KMS_KEY_NAMES=kube", "VAULT_KMS_LISTEN=unix://" + sock, "VAULT_KMS_HEALTH_ADDR=" + health,
	}
	logs := &testvault.Buffer{}
	plugin.Stdout, plugin.Stderr = logs, logs
	if err := plugin.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { plugin.Wait(); close(exited) }()
	t.Cleanup(func() {
		plugin.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("plugin log:\n%s", logs)
		}
	})
	base := "http://" + health
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if res, err := http.Get(base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin did not become ready on %s/readyz", base)
		}
	}

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kms := kmsapi.NewKeyManagementServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := kms.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	enc, err := kms.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "1", Plaintext: []byte("a DEK")})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if _, err := kms.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "2", Ciphertext: enc.Ciphertext, KeyId: st.KeyId}); err != nil {
		t.Fatalf("Decrypt: %v", err)
	}

	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	textParser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := textParser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	exported := map[string][]string{}
	for name, labels := range synthetic {
		exported[name] = labels
	}
	for name, f := range families {
		var labelNames []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labelNames, l.GetName()) {
					labelNames = append(labelNames, l.GetName())
				}
			}
		}
		sort.Strings(labelNames)
		switch f.GetType().String() {
		case "HISTOGRAM":
			exported[name+"_bucket"] = append(slices.Clone(labelNames), "le")
			exported[name+"_sum"], exported[name+"_count"] = labelNames, labelNames
		case "SUMMARY":
			exported[name] = append(slices.Clone(labelNames), "quantile")
			exported[name+"_sum"], exported[name+"_count"] = labelNames, labelNames
		default:
			exported[name] = labelNames
		}
	}
	return exported
}
