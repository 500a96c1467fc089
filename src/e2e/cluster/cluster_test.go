package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// The names of the README: transit key, Vault policy and role, and the
// Kubernetes auth role's bindings and audience.
const (
	oldKey     = "kube-secrets"
	newKey     = "kube-secrets-next"
	vaultRole  = "vault-kms-plugin"
	roleSA     = "vault-kms-plugin"
	roleSANS   = "kube-system"
	readmeAud  = "vault" // the README's role audience and the chart's default auth.audience
	refreshEnv = "2s"    // VAULT_KMS_KEY_REFRESH_INTERVAL, through the values' extraEnv
	// graceValue is the values' statusGrace (VAULT_KMS_STATUS_GRACE):
	// short, so that the outage stage sees the grace end well inside its
	// bounds.
	graceValue = "10s"
)

// apiAudience is the apiserver's own audience (its --service-account-issuer,
// as --api-audiences is not set). Vault without a token_reviewer_jwt calls
// TokenReview with the client's token itself, which the apiserver accepts
// only with this audience: the chart README's "Audience and token review".
const apiAudience = "https://kubernetes.default.svc.cluster.local"

// vaultValues is a values file in the short vault-values.yaml form of the
// README, pointed at the test's Vault (plain http, so no ca-cert), with
// kubernetes auth (the chart's default, written out) whose token carries
// the apiserver's audience, a short key refresh interval and a short
// outage grace.
const vaultValues = `keyNames:
%s
transitPath: /transit
addr: %s
auth:
  method: kubernetes
  audience: ` + apiAudience + `
statusGrace: ` + graceValue + `
extraEnv:
  - name: VAULT_KMS_KEY_REFRESH_INTERVAL
    value: ` + refreshEnv + `
`

// apiserverStatusInterval is how often a healthy kube-apiserver calls the
// plugin's Status (k8s.io/apiserver's kmsv2PluginHealthzPositiveInterval).
const apiserverStatusInterval = time.Minute

// TestCluster takes minutes: make e2e runs it (make test runs only the
// contract test below it, by name). Its stages run in order on one bed,
// each a subtest; the first that fails stops the test.
func TestCluster(t *testing.T) {
	b := newClusterRun(t)
	for _, s := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"1_chart_renders_and_plugin_starts_as_the_DaemonSet", b.chartRendersAndPluginStarts},
		{"2_vault_kubernetes_auth_via_TokenReview", b.vaultKubernetesAuth},
		{"3_apiserver_encrypts_secrets_with_kms_v2", b.apiserverEncryptsWithKMSv2},
		{"4_server_dry_run_of_the_whole_chart", b.serverDryRunOfTheChart},
		{"5_key_rotation", b.keyRotation},
		{"6_plugin_sigkill_and_restart", b.pluginSIGKILLAndRestart},
		{"7_vault_outage", b.vaultOutage},
		{"8_kms_v1", b.kmsV1},
		{"9_move_to_a_new_key", b.moveToANewKey},
		{"10_storage_version_migration_as_runbook_1", b.storageVersionMigration},
	} {
		b.stage(s.name, s.run)
	}
}

// clusterRun is what TestCluster's stages share: the bed, and what one
// stage leaves for the next.
type clusterRun struct {
	*testBed
	began   time.Time
	timings []timing

	socketOnNode string // where the README's EncryptionConfiguration finds the plugin
	jwt          string // the pod's projected service-account token
	v2Config     string // the README's EncryptionConfiguration, on this node
}

type timing struct {
	name string
	d    time.Duration
}

// newClusterRun starts the bed: the plugin's binary, etcd, Vault with the
// README's transit key and policy, and kube-apiserver without encryption,
// with the test's namespace.
func newClusterRun(t *testing.T) *clusterRun {
	b := &clusterRun{testBed: newTestBed(t, ""), began: time.Now()}
	// Registered after the work directory's removal, so it runs before
	// it, and after every process has stopped.
	t.Cleanup(func() {
		var sum strings.Builder
		for _, tm := range b.timings {
			fmt.Fprintf(&sum, "\n  %-52s %6.1fs", tm.name, tm.d.Seconds())
		}
		fmt.Fprintf(&sum, "\n  %-52s %6.1fs", "total", time.Since(b.began).Seconds())
		t.Logf("stage timings:%s", sum.String())
		b.collectLogs(t)
	})
	b.timed("setup: build the plugin", func() {
		// VAULT_KMS_E2E_PLUGIN_BIN: test a binary built elsewhere (a release).
		if b.PluginBin = os.Getenv("VAULT_KMS_E2E_PLUGIN_BIN"); b.PluginBin == "" {
			b.PluginBin = bed.BuildPlugin(t, b.Dir)
		}
	})
	b.timed("setup: start etcd", func() { b.StartEtcd(t) })
	b.timed("setup: start Vault (file storage)", func() { b.StartVault(testvault.Options{Persistent: true}, oldKey, vaultRole) })
	b.timed("setup: start kube-apiserver (no encryption)", func() { b.StartAPIServer(t, "") })
	if _, err := b.Client.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// What kube-controller-manager (not run here) would do: the namespace's
	// default ServiceAccount, which admission requires for the chart's
	// `helm test` Pod.
	if _, err := b.Client.CoreV1().ServiceAccounts(releaseNS).Create(ctx(t), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.socketOnNode = filepath.Join(b.hostDir, strings.TrimPrefix(readmeEndpoint, "unix://"))
	return b
}

// timed runs a step of the set-up and records how long it took.
func (b *clusterRun) timed(name string, f func()) {
	start := time.Now()
	f()
	b.timings = append(b.timings, timing{name, time.Since(start)})
	b.top.Logf("%s: %s", name, time.Since(start).Round(100*time.Millisecond))
}

// stage runs a stage as a subtest, records how long it took, and stops
// the test if it failed: the next stage starts from what it left.
func (b *clusterRun) stage(name string, f func(t *testing.T)) {
	t := b.top
	start := time.Now()
	ok := t.Run(name, f)
	b.timings = append(b.timings, timing{name, time.Since(start)})
	t.Logf("stage %s: %s", name, time.Since(start).Round(100*time.Millisecond))
	if !ok {
		t.FailNow()
	}
}

// dryRun runs `kubectl apply --dry-run=server` on a rendered file and
// checks that every object went through.
func dryRun(t testing.TB, b *testBed, file string, objects int) {
	t.Helper()
	out, err := b.Kubectl("apply", "--dry-run=server", "-f", file)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -f %s: %v\n%s", filepath.Base(file), err, out)
	}
	if n := strings.Count(out, "(server dry run)"); n != objects {
		t.Fatalf("server dry run of %d objects reported %d:\n%s", objects, n, out)
	}
	t.Logf("kubectl apply --dry-run=server -f %s:\n%s", filepath.Base(file), strings.TrimSpace(out))
}

func (b *testBed) apiMetrics(t testing.TB) metrics {
	t.Helper()
	return scrape(t, func() (int, string, error) { return b.APIGet("/metrics") })
}

// vaultWrite writes to Vault as root, failing t (not the test owning the
// server) on error.
func (b *testBed) vaultWrite(t testing.TB, path string, data map[string]any) *api.Secret {
	t.Helper()
	s, err := b.Vault.Client().Logical().Write(path, data)
	if err != nil {
		t.Fatalf("vault write %s: %v", path, err)
	}
	return s
}

// rotate rotates a transit key and returns its new latest version.
func (b *testBed) rotate(t testing.TB, key string) int {
	t.Helper()
	b.vaultWrite(t, "transit/keys/"+key+"/rotate", nil)
	s, err := b.Vault.Client().Logical().Read("transit/keys/" + key)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	fmt.Sscan(fmt.Sprint(s.Data["latest_version"]), &v)
	return v
}

// keyIDHash is how the apiserver's metrics label a key_id.
func keyIDHash(keyID string) string {
	sum := sha256.Sum256([]byte(keyID))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func parseDuration(t testing.TB, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func indent(s, pfx string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return pfx + strings.Join(lines, "\n"+pfx) + "\n"
}

// saveVaultLog appends what Vault printed since the last save to vault.log.
func (b *testBed) saveVaultLog() {
	if b.Vault == nil {
		return
	}
	l := b.Vault.Log()
	if len(l) < b.vaultSaved {
		b.vaultSaved = 0
	}
	f, err := os.OpenFile(filepath.Join(b.LogDir, "vault.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteString(l[b.vaultSaved:])
	b.vaultSaved = len(l)
}

// collectLogs keeps the logs of a failed run (or of any run with
// VAULT_KMS_E2E_KEEP=1) in /tmp/vault-kms-e2e-<timestamp>.
func (b *testBed) collectLogs(t testing.TB) {
	b.saveVaultLog()
	if !t.Failed() && os.Getenv("VAULT_KMS_E2E_KEEP") == "" {
		return
	}
	dst := filepath.Join(os.TempDir(), "vault-kms-e2e-"+time.Now().Format("20060102-150405"))
	if err := os.CopyFS(dst, os.DirFS(b.LogDir)); err != nil {
		t.Logf("copy the logs to %s: %v (they are in %s until the test's cleanup)", dst, err, b.LogDir)
		return
	}
	t.Logf("logs (kube-apiserver, etcd, Vault, plugin, kubectl) and the rendered chart, values and EncryptionConfigurations: %s", dst)
}
