package cluster

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
)

// recorder is a testing.TB that records failures instead of failing the
// test, so that a check can be shown to fail.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}
func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }
func (r *recorder) FailNow()          { r.Fatalf("FailNow") }
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs) > 0
}

// failures runs f with a recorder and returns what it reported.
func failures(t *testing.T, f func(tb testing.TB)) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return strings.Join(r.msgs, "\n")
}

// TestChartContractChecksCatchMistakes shows that stage 1 of TestCluster
// fails on the chart mistakes it is there for: the same checks, on a render
// of the chart with one mistake put in by hand. It starts no server.
func TestChartContractChecksCatchMistakes(t *testing.T) {
	dir := t.TempDir()
	bin := bed.BuildPlugin(t, dir)
	values := bed.WriteFile(t, filepath.Join(dir, "values.yaml"), fmt.Sprintf(vaultValues, "  - "+oldKey, "http://127.0.0.1:8200"))
	check := func(r *rendered) string {
		return failures(t, func(tb testing.TB) {
			p := planPod(tb, r, bin, filepath.Join(dir, "node"), filepath.Join(dir, "pod"))
			checkEnvNames(tb, bin, p.chartEnv)
		})
	}
	if got := check(renderChart(t, values)); got != "" {
		t.Fatalf("the chart as it is fails the checks: %s", got)
	}

	cm := func(r *rendered) map[string]string {
		return r.configMaps[r.ds.Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef.Name].Data
	}
	for _, tc := range []struct {
		name   string
		break_ func(r *rendered)
		want   string
	}{
		{"misspelt variable", func(r *rendered) {
			d := cm(r)
			d["VAULT_KMS_SA_TOKEN_PATH"] = d["VAULT_KMS_SA_TOKEN_FILE"]
			delete(d, "VAULT_KMS_SA_TOKEN_FILE")
		}, "VAULT_KMS_SA_TOKEN_PATH, which 'vault-kms-plugin --help' does not list"},
		{"token file outside the projected volume", func(r *rendered) {
			cm(r)["VAULT_KMS_SA_TOKEN_FILE"] = "/var/run/secrets/kubernetes.io/serviceaccount/token"
		}, "is in no volume mounted into the container"},
		{"socket outside the hostPath", func(r *rendered) {
			cm(r)["VAULT_KMS_LISTEN"] = "unix:///run/kms/socket.sock"
		}, "is in no volume mounted into the container"},
		{"probe on another port", func(r *rendered) {
			r.ds.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9000)
		}, "readiness probe: port 9000 is not where the plugin's health server listens"},
		{"health port not declared", func(r *rendered) {
			cm(r)["VAULT_KMS_HEALTH_ADDR"] = ":9000"
		}, "port 9000 is not a containerPort"},
		{"mount without its volume", func(r *rendered) {
			c := &r.ds.Spec.Template.Spec.Containers[0]
			c.VolumeMounts[0].Name = "nope"
		}, "the pod has no such volume"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := renderChart(t, values)
			tc.break_(r)
			if got := check(r); !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want a failure containing %q", got, tc.want)
			}
		})
	}
}
