package cluster

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// mintToken does what the kubelet does for the projected volume: a
// TokenRequest for the pod's service account with the volume's audience
// and lifetime, written where the volume is mounted.
func (b *bed) mintToken(t testing.TB, p *podPlan) string {
	t.Helper()
	exp := p.expiration
	tr, err := b.client.CoreV1().ServiceAccounts(p.saNS).CreateToken(ctx(t), p.saName, &authenticationv1.TokenRequest{
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
func (b *bed) tokenFor(t testing.TB, ns, sa, aud string) string {
	t.Helper()
	exp := int64(3600)
	spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}
	if aud != "" {
		spec.Audiences = []string{aud}
	}
	tr, err := b.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx(t), sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// startPlugin starts the plugin as the pod would and waits until its
// socket answers (/livez). It does not wait for readiness (Vault login).
func (b *bed) startPlugin(t testing.TB) time.Duration {
	t.Helper()
	start := time.Now()
	b.pluginN++
	p := b.pod
	b.plugin = startProc(t, "vault-kms-plugin", filepath.Join(b.logDir, "plugin.log"), b.dir, p.argv[0], p.argv[1:], p.environ())
	proc := b.plugin
	b.top.Cleanup(func() { proc.stop(syscall.SIGTERM, 15*time.Second) })
	waitFor(t, 30*time.Second, "plugin /livez", func() error {
		if !proc.running() {
			t.Fatalf("the plugin exited (%v); last lines of its log:\n%s", proc.err, tail(filepath.Join(b.logDir, "plugin.log"), 20))
		}
		code, body, err := httpGet(p.liveURL)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	return time.Since(start)
}

// waitPluginReady waits for the DaemonSet's readiness probe to pass.
func (b *bed) waitPluginReady(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, timeout, "plugin readiness probe "+b.pod.readyURL, func() error {
		if !b.plugin.running() {
			t.Fatalf("the plugin exited (%v); last lines of its log:\n%s", b.plugin.err, tail(filepath.Join(b.logDir, "plugin.log"), 20))
		}
		code, body, err := httpGet(b.pod.readyURL)
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
func (b *bed) probe(t testing.TB, api string) (string, error) {
	t.Helper()
	out, err := exec.Command(b.pluginBin, "probe", "-endpoint", "unix://"+b.pod.socket, "-api", api).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// statusKeyID is the key_id the plugin's Status reports.
func (b *bed) statusKeyID(t testing.TB) string {
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

func (b *bed) pluginMetrics(t testing.TB) metrics {
	t.Helper()
	return scrape(t, func() (int, string, error) { return httpGet(b.pod.metricsURL) })
}

// grpcCalls counts the plugin's answered gRPC calls: api v2 or v1beta1.
func (m metrics) grpcCalls(api, method, code string) float64 {
	return m.sum("vault_kms_plugin_grpc_requests_total", map[string]string{"api": api, "method": method, "code": code})
}

func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// isSocket reports whether path is a unix socket.
func isSocket(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}
