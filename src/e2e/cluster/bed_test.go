package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// bed is the control plane under test and what the test wrote to it.
type bed struct {
	top     *testing.T // owns the processes: they live as long as the whole test
	dir     string     // work directory (short: the socket path must fit in 108 bytes)
	logDir  string
	hostDir string // the control-plane node's filesystem root
	pki     *pki

	etcdBin, apiserverBin, kubectlBin, pluginBin string

	vault *testvault.Server

	etcd     *proc
	etcdPort int

	apiserver     *proc
	apiserverPort int
	apiserverArgs []string // flags of the running apiserver (for the logs)
	kubeconfig    string
	client        *kubernetes.Clientset
	https         *http.Client // verified TLS to the apiserver, admin token added

	plugin   *proc
	pod      *podPlan // how the plugin runs (from the rendered chart)
	pluginN  int      // plugin starts so far
	rendered *rendered

	// written is every Secret the test stored successfully: namespace/name
	// → data. Nothing may be lost.
	written map[string]map[string][]byte
	seq     int

	vaultSaved int // bytes of the running Vault's log already in vault.log
}

const testNS = "e2e"

func (b *bed) logf(format string, args ...any) {
	b.top.Helper()
	b.top.Logf(format, args...)
}

// --- etcd ---------------------------------------------------------------

func (b *bed) startEtcd(t testing.TB) {
	t.Helper()
	b.etcdPort = freePort(t)
	peer := freePort(t)
	client := fmt.Sprintf("http://127.0.0.1:%d", b.etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	args := []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(b.dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync",
		"--log-level=warn",
	}
	b.etcd = startProc(t, "etcd", filepath.Join(b.logDir, "etcd.log"), b.dir, b.etcdBin, args, nil)
	b.top.Cleanup(func() { b.etcd.stop(syscall.SIGTERM, 10*time.Second) })
	waitFor(t, 60*time.Second, "etcd /health", func() error {
		if !b.etcd.running() {
			t.Fatalf("etcd exited: %v (log: %s)", b.etcd.err, filepath.Join(b.logDir, "etcd.log"))
		}
		resp, err := http.Get(client + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

type etcdKV struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

// etcdRange reads keys straight from etcd through its v3 JSON gateway, as
// scripts/demo.sh does: key alone, or [key, rangeEnd).
func (b *bed) etcdRange(t testing.TB, key, rangeEnd string) []etcdKV {
	t.Helper()
	req := map[string]any{"key": []byte(key)}
	if rangeEnd != "" {
		req["range_end"] = []byte(rangeEnd)
	}
	body, _ := json.Marshal(req)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v3/kv/range", b.etcdPort), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("etcd range %s: %v", key, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("etcd range %s: %s: %s", key, resp.Status, raw)
	}
	var out struct {
		KVs []etcdKV `json:"kvs"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("etcd range %s: %v: %s", key, err, raw)
	}
	return out.KVs
}

// etcdGet is the raw value etcd holds for a Secret.
func (b *bed) etcdGet(t testing.TB, ns, name string) []byte {
	t.Helper()
	return b.etcdGetPrefix(t, "/registry", ns, name)
}

// etcdGetPrefix is etcdGet for an apiserver with another --etcd-prefix.
func (b *bed) etcdGetPrefix(t testing.TB, prefix, ns, name string) []byte {
	t.Helper()
	key := prefix + "/secrets/" + ns + "/" + name
	kvs := b.etcdRange(t, key, "")
	if len(kvs) != 1 {
		t.Fatalf("etcd has %d values at %s, want 1", len(kvs), key)
	}
	return kvs[0].Value
}

// etcdSecrets is every Secret in etcd under prefix (e.g. /registry/secrets/).
func (b *bed) etcdSecrets(t testing.TB, prefix string) []etcdKV {
	t.Helper()
	// The range end of a prefix: the prefix with its last byte incremented.
	end := []byte(prefix)
	end[len(end)-1]++
	return b.etcdRange(t, prefix, string(end))
}

// --- kube-apiserver --------------------------------------------------------

// startAPIServer starts kube-apiserver on etcd, with encCfg (a file, or
// "" for no encryption) and extra flags, and waits for /readyz.
func (b *bed) startAPIServer(t testing.TB, encCfg string, extra ...string) time.Duration {
	t.Helper()
	start := time.Now()
	if b.apiserverPort == 0 {
		// Kept across restarts: Vault's kubernetes_host points at it.
		b.apiserverPort = freePort(t)
	}
	args := []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", b.etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", b.apiserverPort),
		"--tls-cert-file=" + b.pki.servingCert,
		"--tls-private-key-file=" + b.pki.servingKy,
		"--token-auth-file=" + b.pki.tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + b.pki.saPub,
		"--service-account-signing-key-file=" + b.pki.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// Without it the apiserver refuses a loopback advertise address.
		"--endpoint-reconciler-type=none",
		// Logs the KMS health probes' failures (klog V(2)).
		"--v=2",
	}
	if encCfg != "" {
		args = append(args, "--encryption-provider-config="+encCfg)
	}
	// An extra --authorization-mode replaces the default one: the flag
	// refuses a mode given twice.
	if slices.ContainsFunc(extra, func(a string) bool { return strings.HasPrefix(a, "--authorization-mode=") }) {
		args = slices.DeleteFunc(args, func(a string) bool { return a == "--authorization-mode=RBAC" })
	}
	args = append(args, extra...)
	b.apiserverArgs = args
	b.apiserver = startProc(t, "kube-apiserver", filepath.Join(b.logDir, "kube-apiserver.log"), b.dir, b.apiserverBin, args, nil)
	p := b.apiserver
	b.top.Cleanup(func() { p.stop(syscall.SIGTERM, 30*time.Second) })
	if b.kubeconfig == "" {
		b.writeKubeconfig(t)
	}
	waitFor(t, 120*time.Second, "kube-apiserver /readyz", func() error {
		if !p.running() {
			t.Fatalf("kube-apiserver exited: %v; last lines of its log:\n%s", p.err, tail(filepath.Join(b.logDir, "kube-apiserver.log"), 30))
		}
		code, body, err := b.apiGet("/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%d: %s", code, body)
		}
		return nil
	})
	return time.Since(start)
}

// stopAPIServer stops kube-apiserver as a static-pod restart does (SIGTERM).
func (b *bed) stopAPIServer(t testing.TB) time.Duration {
	t.Helper()
	d, _ := b.apiserver.stop(syscall.SIGTERM, 60*time.Second)
	return d
}

func (b *bed) writeKubeconfig(t testing.TB) {
	t.Helper()
	b.kubeconfig = writeFile(t, filepath.Join(b.dir, "kubeconfig"), b.kubeconfigFor("e2e-admin", "token: "+b.pki.adminToken))
	cfg, err := clientcmd.BuildConfigFromFlags("", b.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 30 * time.Second
	b.client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(b.pki.caPEM))
	b.https = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
}

// kubeconfigFor is a kubeconfig for the bed's apiserver, user name
// authenticating with auth (the YAML of the user's credentials, e.g.
// "token: ..." or client-certificate and client-key lines).
func (b *bed) kubeconfigFor(name, auth string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: %s
  user:
    %s
contexts:
- name: e2e
  context:
    cluster: e2e
    user: %s
current-context: e2e
`, b.apiserverPort, b.pki.caFile, name, strings.ReplaceAll(auth, "\n", "\n    "), name)
}

// apiGet GETs a path of the apiserver as the admin.
func (b *bed) apiGet(path string) (int, string, error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d%s", b.apiserverPort, path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+b.pki.adminToken)
	resp, err := b.https.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// kubectl runs bin/kubectl with the test's kubeconfig.
func (b *bed) kubectl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(b.kubectlBin, append([]string{"--kubeconfig", b.kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	f, ferr := os.OpenFile(filepath.Join(b.logDir, "kubectl.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if ferr == nil {
		fmt.Fprintf(f, "===== %s: kubectl %q: err=%v\n%s\n", time.Now().Format(time.RFC3339Nano), args, err, out)
		f.Close()
	}
	return string(out), err
}

// --- metrics ------------------------------------------------------------

type metrics map[string]*dto.MetricFamily

func scrape(t testing.TB, get func() (int, string, error)) metrics {
	t.Helper()
	code, body, err := get()
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v\n%.2000s", code, err, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return metrics(fams)
}

// sum adds the values of every series of name whose labels include want.
func (m metrics) sum(name string, want map[string]string) float64 {
	var total float64
	for _, s := range m.series(name, want) {
		switch {
		case s.Counter != nil:
			total += s.Counter.GetValue()
		case s.Gauge != nil:
			total += s.Gauge.GetValue()
		case s.Untyped != nil:
			total += s.Untyped.GetValue()
		}
	}
	return total
}

func (m metrics) series(name string, want map[string]string) []*dto.Metric {
	f, ok := m[name]
	if !ok {
		return nil
	}
	var out []*dto.Metric
	for _, s := range f.Metric {
		labels := map[string]string{}
		for _, l := range s.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// labelValues is the set of values label takes across name's series
// matching want.
func (m metrics) labelValues(name, label string, want map[string]string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m.series(name, want) {
		for _, l := range s.Label {
			if l.GetName() == label && s.Counter != nil {
				out[l.GetValue()] += s.Counter.GetValue()
			}
		}
	}
	return out
}

// --- helpers --------------------------------------------------------------

// waitFor calls f until it returns nil, failing the test after timeout with
// f's last error.
func waitFor(t testing.TB, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	return waitEvery(t, timeout, 250*time.Millisecond, what, f)
}

// waitEvery is waitFor with a chosen interval, for checks that write.
func waitEvery(t testing.TB, timeout, every time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	d, err := procs.WaitFor(context.Background(), timeout, every, what, f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tail is the last n lines of a file, for failure messages.
func tail(path string, n int) string { return procs.Tail(path, n) }

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
