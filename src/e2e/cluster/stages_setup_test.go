package cluster

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
)

// chartRendersAndPluginStarts renders the chart with the README's values,
// checks the DaemonSet's container against the bed (arguments,
// environment, socket, service account), and starts the plugin as the pod
// would: it serves its socket but is not ready without Vault's Kubernetes
// auth.
func (b *clusterRun) chartRendersAndPluginStarts(t *testing.T) {
	b.renderedContainerFitsTheBed(t)
	b.startPluginAsThePod(t)
}

// renderedContainerFitsTheBed renders the chart and checks the
// DaemonSet's container: `serve`, variables the binary knows, the values'
// settings, the README's socket and Vault role.
func (b *clusterRun) renderedContainerFitsTheBed(t *testing.T) {
	values := bed.WriteFile(t, filepath.Join(b.LogDir, "vault-values.yaml"),
		fmt.Sprintf(vaultValues, "  - "+oldKey, b.Vault.Addr))
	b.rendered = renderChart(t, values)
	bed.WriteFile(t, filepath.Join(b.LogDir, "rendered.yaml"), b.rendered.yamlOf(func(doc) bool { return true }))
	b.pod = planPod(t, b.rendered, b.PluginBin, b.hostDir, filepath.Join(b.Dir, "pod"))
	t.Logf("the DaemonSet's container, as run here: argv %q\nenv (chart) %s\nenv (mapped) %s", b.pod.argv, mustJSON(b.pod.chartEnv), mustJSON(b.pod.env))

	checkEnvNames(t, b.PluginBin, b.pod.chartEnv)
	if got := b.pod.argv[1:]; len(got) != 1 || got[0] != "serve" {
		t.Errorf("container args %q, want [serve]", got)
	}
	want := map[string]string{
		"VAULT_ADDR":            b.Vault.Addr,
		"VAULT_KMS_KEY_NAMES":   oldKey,
		"VAULT_KMS_AUTH_METHOD": "kubernetes",
		"VAULT_KMS_AUTH_ROLE":   vaultRole,
		// The projected token, where the projected volume puts it.
		"VAULT_KMS_SA_TOKEN_FILE":        b.pod.tokenFile,
		"VAULT_KMS_KEY_REFRESH_INTERVAL": refreshEnv,
		"VAULT_KMS_STATUS_GRACE":         graceValue,
	}
	for k, v := range want {
		if b.pod.env[k] != v {
			t.Errorf("the plugin gets %s=%q, want %q", k, b.pod.env[k], v)
		}
	}
	// The socket is where the README's EncryptionConfiguration looks.
	if b.pod.socket != b.socketOnNode {
		t.Errorf("the plugin listens on %s (node path), the README's EncryptionConfiguration uses %s", b.pod.socket, readmeEndpoint)
	}
	// The README's Vault role binds this account; the audience is the
	// one the values ask for.
	if b.pod.saName != roleSA || b.pod.saNS != roleSANS || b.pod.audience != apiAudience {
		t.Errorf("the pod's token is for %s/%s with audience %q; want %s/%s (the README's Vault role), audience %q",
			b.pod.saNS, b.pod.saName, b.pod.audience, roleSANS, roleSA, apiAudience)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// startPluginAsThePod applies the chart's ServiceAccount, mints the pod's
// projected token and starts the plugin: its socket serves, mode 0600,
// but it is not ready while Vault has no Kubernetes auth.
func (b *clusterRun) startPluginAsThePod(t *testing.T) {
	// The chart's ServiceAccount, then the kubelet's TokenRequest.
	sa := bed.WriteFile(t, filepath.Join(b.LogDir, "serviceaccount.yaml"), b.rendered.yamlOf(func(d doc) bool { return d.kind == "ServiceAccount" }))
	if out, err := b.Kubectl("apply", "-f", sa); err != nil {
		t.Fatalf("kubectl apply the chart's ServiceAccount: %v\n%s", err, out)
	}
	b.jwt = b.mintToken(t, b.pod)

	d := b.startPlugin(t)
	t.Logf("plugin serving its socket (/livez ok) after %s", d.Round(10*time.Millisecond))
	if fi, err := os.Lstat(b.pod.socket); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, want a socket with mode 0600", b.pod.socket, err)
	}
	// Not ready: Vault has no Kubernetes auth yet.
	code, body, err := bed.HTTPGet(b.pod.readyURL)
	if err != nil || code == 200 {
		t.Fatalf("readiness probe before Vault's Kubernetes auth is set up: %d %v %s", code, err, body)
	}
	t.Logf("readiness before Kubernetes auth exists in Vault: %d %s", code, strings.TrimSpace(body))
}

// vaultKubernetesAuth sets up Vault's Kubernetes auth as the README does:
// the pod's token logs in only once the chart's ClusterRoleBinding
// exists, the README's audience needs a token_reviewer_jwt, and the
// plugin becomes ready.
func (b *clusterRun) vaultKubernetesAuth(t *testing.T) {
	b.podTokenLogsInOnceBound(t)
	b.readmeAudienceNeedsAReviewerJWT(t)

	d := b.waitPluginReady(t, 60*time.Second)
	t.Logf("plugin ready %s after the binding", d.Round(10*time.Millisecond))
	m := b.pluginMetrics(t)
	if n := m.sum("vault_kms_plugin_vault_logins_total", map[string]string{"outcome": "ok"}); n < 1 {
		t.Fatalf("vault_kms_plugin_vault_logins_total{outcome=ok} = %v", n)
	}
	out, err := b.probe(t, "v2")
	if err != nil || !strings.Contains(out, `healthz="ok"`) || !strings.Contains(out, "key_id="+oldKey+"/v1/") {
		t.Fatalf("probe: %v: %s", err, out)
	}
	t.Logf("probe: %s", out)
}

// podTokenLogsInOnceBound: with Kubernetes auth and no
// token_reviewer_jwt, Vault reviews the pod's token with that token,
// which works only once the chart's system:auth-delegator binding exists.
func (b *clusterRun) podTokenLogsInOnceBound(t *testing.T) {
	b.enableKubernetesAuth(t, "kubernetes", "")
	b.writeVaultRole(t, "kubernetes", vaultRole, apiAudience)
	if err := b.vaultLogin("kubernetes", vaultRole, b.jwt); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("login before the ClusterRoleBinding: %v, want permission denied", err)
	}
	crb := bed.WriteFile(t, filepath.Join(b.LogDir, "clusterrolebinding.yaml"), b.rendered.yamlOf(func(d doc) bool { return d.kind == "ClusterRoleBinding" }))
	if out, err := b.Kubectl("apply", "-f", crb); err != nil {
		t.Fatalf("kubectl apply the chart's ClusterRoleBinding: %v\n%s", err, out)
	}
	bed.WaitFor(t, 20*time.Second, "Vault login with the pod's token", func() error { return b.vaultLogin("kubernetes", vaultRole, b.jwt) })
}

// readmeAudienceNeedsAReviewerJWT: with the chart's default audience,
// vault (the README's role), a token Vault reviews with itself is refused
// by the apiserver, binding or not; Vault needs a token_reviewer_jwt then
// (chart README, "Audience and token review").
func (b *clusterRun) readmeAudienceNeedsAReviewerJWT(t *testing.T) {
	vaultAud := b.tokenFor(t, b.pod.saNS, b.pod.saName, readmeAud)
	b.writeVaultRole(t, "kubernetes", "readme-audience", readmeAud)
	if err := b.vaultLogin("kubernetes", "readme-audience", vaultAud); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("login with audience %q and no token_reviewer_jwt: %v, want permission denied", readmeAud, err)
	}
	// The chart's account is bound to system:auth-delegator.
	b.enableKubernetesAuth(t, "kubernetes-reviewer", b.tokenFor(t, b.pod.saNS, b.pod.saName, ""))
	b.writeVaultRole(t, "kubernetes-reviewer", vaultRole, readmeAud)
	if err := b.vaultLogin("kubernetes-reviewer", vaultRole, vaultAud); err != nil {
		t.Fatalf("login with audience %q and a token_reviewer_jwt: %v", readmeAud, err)
	}
	t.Logf("audience %q: refused without token_reviewer_jwt, accepted with one; the plugin uses audience %q without one", readmeAud, apiAudience)
}

// enableKubernetesAuth mounts Kubernetes auth at mount, pointed at the
// bed's apiserver. Without a reviewerJWT ("") Vault reviews each client's
// JWT with that JWT.
func (b *clusterRun) enableKubernetesAuth(t *testing.T, mount, reviewerJWT string) {
	if err := b.Vault.Client().Sys().EnableAuthWithOptions(mount, &api.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"kubernetes_host":      fmt.Sprintf("https://127.0.0.1:%d", b.APIServerPort),
		"kubernetes_ca_cert":   b.PKI.CAPEM,
		"disable_local_ca_jwt": true,
	}
	if reviewerJWT != "" {
		cfg["token_reviewer_jwt"] = reviewerJWT
	}
	b.vaultWrite(t, "auth/"+mount+"/config", cfg)
}

// writeVaultRole writes the README's role (its service account, namespace and
// policy) as name at mount, for tokens with audience aud.
func (b *clusterRun) writeVaultRole(t *testing.T, mount, name, aud string) {
	b.vaultWrite(t, "auth/"+mount+"/role/"+name, map[string]any{
		"bound_service_account_names":      roleSA,
		"bound_service_account_namespaces": roleSANS,
		"audience":                         aud,
		"token_policies":                   vaultRole,
		"token_ttl":                        "1h",
		"token_max_ttl":                    "24h",
	})
}

// vaultLogin logs in to Vault at mount with role and a service account's
// JWT.
func (b *clusterRun) vaultLogin(mount, role, jwt string) error {
	c := b.Vault.Client()
	c.ClearToken()
	_, err := c.Logical().Write("auth/"+mount+"/login", map[string]any{"role": role, "jwt": jwt})
	return err
}

// apiserverEncryptsWithKMSv2 restarts the apiserver with the README's
// EncryptionConfiguration: new Secrets are KMS v2 ciphertext in etcd
// under the plugin's key_id, and every Secret reads back.
func (b *clusterRun) apiserverEncryptsWithKMSv2(t *testing.T) {
	// A Secret written before encryption: plain protobuf in etcd.
	b.createSecret(t, "before-encryption")
	raw := b.EtcdGet(t, testNS, "before-encryption")
	if !bytes.HasPrefix(raw, []byte("k8s\x00")) || !bytes.Contains(raw, b.written[testNS+"/before-encryption"]["password"]) {
		t.Fatalf("before encryption etcd should hold the plain Secret, got %q", head(raw))
	}

	b.v2Config = onNode(t, readmeEncryptionConfig(t), b.hostDir)
	cfg := bed.WriteFile(t, filepath.Join(b.LogDir, "encryption-config-v2.yaml"), b.v2Config)
	t.Logf("kube-apiserver stopped in %s", b.StopAPIServer().Round(10*time.Millisecond))
	t.Logf("kube-apiserver with the README's EncryptionConfiguration ready in %s:\n%s", b.StartAPIServer(t, cfg).Round(10*time.Millisecond), b.v2Config)
	if code, body, _ := b.APIGet("/readyz/kms-providers"); code != 200 {
		t.Fatalf("/readyz/kms-providers: %d %s", code, body)
	}

	// kubectl create secret, as in the README.
	name := "first-encrypted"
	pw := "hunter2-" + hex.EncodeToString([]byte(time.Now().Format("150405.000")))
	if out, err := b.Kubectl("create", "secret", "generic", name, "-n", testNS, "--from-literal=password="+pw); err != nil {
		t.Fatalf("kubectl create secret: %v\n%s", err, out)
	}
	b.written[testNS+"/"+name] = map[string][]byte{"password": []byte(pw)}
	raw = b.EtcdGet(t, testNS, name)
	keyID := b.checkStoredV2(t, name, raw, oldKey+"/v1/", oldKey+":vault:v1:")
	if st := b.statusKeyID(t); st != keyID {
		t.Fatalf("etcd's key_id %q is not the plugin's Status key_id %q", keyID, st)
	}
	t.Logf("etcd holds %q... (key_id %s)", head(raw), keyID)
	out, err := b.Kubectl("get", "secret", name, "-n", testNS, "-o", "jsonpath={.data.password}")
	if err != nil || strings.TrimSpace(out) != b64([]byte(pw)) {
		t.Fatalf("kubectl get secret: %v: %q", err, out)
	}
	// And the Secret written before still reads (identity provider).
	b.checkSecretsRead(t)
}

// serverDryRunOfTheChart sends the rendered chart, with defaults and with
// every option, through the apiserver's server-side dry run.
func (b *clusterRun) serverDryRunOfTheChart(t *testing.T) {
	noMonitor := func(d doc) bool { return d.kind != "ServiceMonitor" }
	f := bed.WriteFile(t, filepath.Join(b.LogDir, "dry-run-default.yaml"), b.rendered.yamlOf(noMonitor))
	dryRun(t, b.testBed, f, len(b.rendered.docs))

	// Every optional object: metrics Service, ServiceMonitor (left out:
	// its CRD, monitoring.coreos.com, is not installed), caBundle ConfigMap.
	all := bed.WriteFile(t, filepath.Join(b.LogDir, "vault-values-all.yaml"),
		fmt.Sprintf(vaultValues, "  - "+oldKey, b.Vault.Addr)+
			"metrics:\n  serviceMonitor:\n    enabled: true\ncaBundle: |\n"+indent(b.PKI.CAPEM, "  "))
	r := renderChart(t, all)
	kinds := map[string]int{}
	for _, d := range r.docs {
		kinds[d.kind]++
	}
	if kinds["ServiceMonitor"] != 1 || kinds["Service"] != 1 || kinds["ConfigMap"] != 2 {
		t.Fatalf("the render with every option has %v", kinds)
	}
	f = bed.WriteFile(t, filepath.Join(b.LogDir, "dry-run-all-options.yaml"), r.yamlOf(noMonitor))
	dryRun(t, b.testBed, f, len(r.docs)-1)
	t.Log("ServiceMonitor left out of the server dry run: its CRD (monitoring.coreos.com/v1) is not installed")
}
