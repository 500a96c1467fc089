package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
)

// mintToken does what the kubelet does for the projected volume: a
// TokenRequest for the pod's service account with the volume's audience
// and lifetime, written where the volume is mounted.
func (b *testBed) mintToken(t testing.TB, p *podPlan) string {
	t.Helper()
	exp := p.expiration
	tr, err := b.Client.CoreV1().ServiceAccounts(p.saNS).CreateToken(ctx(t), p.saName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{p.audience}, ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s (audience %q): %v", p.saNS, p.saName, p.audience, err)
	}
	if p.tokenFile == "" {
		t.Fatal("the DaemonSet projects no service-account token")
	}
	if err := os.WriteFile(p.tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// tokenFor is a TokenRequest for a service account with one audience ("":
// the apiserver's own), valid for an hour.
func (b *testBed) tokenFor(t testing.TB, ns, sa, aud string) string {
	t.Helper()
	exp := int64(3600)
	spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}
	if aud != "" {
		spec.Audiences = []string{aud}
	}
	tr, err := b.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx(t), sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// startPlugin starts the plugin as the pod would and waits until its
// socket answers (/livez). It does not wait for readiness (Vault login).
func (b *testBed) startPlugin(t testing.TB) time.Duration {
	t.Helper()
	start := time.Now()
	b.pluginN++
	b.plugin = b.StartPlugin(t, b.pod.argv, b.pod.environ(), b.pod.liveURL)
	return time.Since(start)
}

// waitPluginReady waits for the DaemonSet's readiness probe to pass.
func (b *testBed) waitPluginReady(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	return bed.WaitFor(t, timeout, "plugin readiness probe "+b.pod.readyURL, func() error {
		if !b.plugin.Running() {
			t.Fatalf("the plugin exited (%v); last lines of its log:\n%s", b.plugin.Err(), procs.Tail(filepath.Join(b.LogDir, "plugin.log"), 20))
		}
		code, body, err := bed.HTTPGet(b.pod.readyURL)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%d %s", code, strings.TrimSpace(body))
		}
		return nil
	})
}

// probe runs `vault-kms-plugin probe` on the socket, as the chart's `helm
// test` pod does, and returns its output.
func (b *testBed) probe(t testing.TB, api string) (string, error) {
	t.Helper()
	out, err := exec.Command(b.PluginBin, "probe", "-endpoint", "unix://"+b.pod.socket, "-api", api).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// statusKeyID is the key_id the plugin's Status reports.
func (b *testBed) statusKeyID(t testing.TB) string {
	t.Helper()
	out, err := b.probe(t, "v2")
	if err != nil {
		t.Fatalf("probe: %v: %s", err, out)
	}
	_, id, ok := strings.Cut(out, "key_id=")
	if !ok {
		t.Fatalf("probe printed no key_id: %s", out)
	}
	return strings.TrimSpace(id)
}

func (b *testBed) pluginMetrics(t testing.TB) metrics {
	t.Helper()
	return scrape(t, func() (int, string, error) { return bed.HTTPGet(b.pod.metricsURL) })
}

// grpcCalls counts the plugin's answered gRPC calls: api v2 or v1beta1.
func (m metrics) grpcCalls(api, method, code string) float64 {
	return m.sum("vault_kms_plugin_grpc_requests_total", map[string]string{"api": api, "method": method, "code": code})
}

// isSocket reports whether path is a unix socket.
func isSocket(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}
