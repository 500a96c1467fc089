package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	// graceEnv is VAULT_KMS_STATUS_GRACE, through the values' extraEnv: short,
	// so that the outage stage sees the grace end well inside its bounds.
	graceEnv = "10s"
)

// apiAudience is the apiserver's own audience (its --service-account-issuer,
// as --api-audiences is not set). Vault without a token_reviewer_jwt calls
// TokenReview with the client's token itself, which the apiserver accepts
// only with this audience: the chart README's "Audience and token review".
const apiAudience = "https://kubernetes.default.svc.cluster.local"

// vaultValues is a values file in the short vault-values.yaml form of the
// README, pointed at the test's Vault (plain http, so no ca-cert), with
// kubernetes auth (the chart's default, written out) whose token carries
// the apiserver's audience, and a short key refresh interval.
const vaultValues = `keyNames:
%s
transitPath: /transit
addr: %s
auth:
  method: kubernetes
  audience: ` + apiAudience + `
extraEnv:
  - name: VAULT_KMS_KEY_REFRESH_INTERVAL
    value: ` + refreshEnv + `
  - name: VAULT_KMS_STATUS_GRACE
    value: ` + graceEnv + `
`

// apiserverStatusInterval is how often a healthy kube-apiserver calls the
// plugin's Status (k8s.io/apiserver's kmsv2PluginHealthzPositiveInterval).
const apiserverStatusInterval = time.Minute

// TestCluster takes minutes: make e2e runs it (make test runs only the
// contract test below it, by name).
func TestCluster(t *testing.T) {
	began := time.Now()
	work := t.TempDir()
	b := &bed{
		top:     t,
		dir:     work,
		logDir:  filepath.Join(work, "logs"),
		hostDir: filepath.Join(work, "node"),
		written: map[string]map[string][]byte{},
	}
	for _, d := range []string{b.logDir, b.hostDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	type timing struct {
		name string
		d    time.Duration
	}
	var timings []timing
	// Registered first, so it runs last: after every process has stopped.
	t.Cleanup(func() {
		var sum strings.Builder
		for _, tm := range timings {
			fmt.Fprintf(&sum, "\n  %-52s %6.1fs", tm.name, tm.d.Seconds())
		}
		fmt.Fprintf(&sum, "\n  %-52s %6.1fs", "total", time.Since(began).Seconds())
		t.Logf("stage timings:%s", sum.String())
		b.collectLogs(t)
	})
	timed := func(name string, f func()) {
		start := time.Now()
		f()
		timings = append(timings, timing{name, time.Since(start)})
		t.Logf("%s: %s", name, time.Since(start).Round(100*time.Millisecond))
	}
	stage := func(name string, f func(t *testing.T)) {
		start := time.Now()
		ok := t.Run(name, f)
		timings = append(timings, timing{name, time.Since(start)})
		t.Logf("stage %s: %s", name, time.Since(start).Round(100*time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}

	// --- The test bed: binaries, certificates, etcd, Vault, kube-apiserver.
	b.etcdBin = testbedBin(t, "etcd")
	b.apiserverBin = testbedBin(t, "kube-apiserver")
	b.kubectlBin = testbedBin(t, "kubectl")
	testvault.Bin(t)
	timed("setup: build the plugin", func() {
		// VAULT_KMS_E2E_PLUGIN_BIN: test a binary built elsewhere (a release).
		if b.pluginBin = os.Getenv("VAULT_KMS_E2E_PLUGIN_BIN"); b.pluginBin == "" {
			b.pluginBin = buildPlugin(t, work)
		}
	})
	b.pki = newPKI(t, filepath.Join(work, "pki"))
	timed("setup: start etcd", func() { b.startEtcd(t) })
	timed("setup: start Vault (file storage)", func() {
		b.vault = testvault.Start(t, testvault.Options{Persistent: true})
		// The README's "Prepare Vault": transit, the key, the policy.
		b.vault.EnableTransit("transit", oldKey)
		b.vault.Policy(vaultRole, testvault.KMSPolicy("transit", oldKey))
	})
	timed("setup: start kube-apiserver (no encryption)", func() { b.startAPIServer(t, "") })
	if _, err := b.client.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// What kube-controller-manager (not run here) would do: the namespace's
	// default ServiceAccount, which admission requires for the chart's
	// `helm test` Pod.
	if _, err := b.client.CoreV1().ServiceAccounts(releaseNS).Create(ctx(t), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	socketOnNode := filepath.Join(b.hostDir, strings.TrimPrefix(readmeEndpoint, "unix://"))
	var jwt string

	stage("1_chart_renders_and_plugin_starts_as_the_DaemonSet", func(t *testing.T) {
		values := writeFile(t, filepath.Join(b.logDir, "vault-values.yaml"),
			fmt.Sprintf(vaultValues, "  - "+oldKey, b.vault.Addr))
		b.rendered = renderChart(t, values)
		writeFile(t, filepath.Join(b.logDir, "rendered.yaml"), b.rendered.yamlOf(func(doc) bool { return true }))
		b.pod = planPod(t, b.rendered, b.pluginBin, b.hostDir, filepath.Join(work, "pod"))
		t.Logf("the DaemonSet's container, as run here: argv %q\nenv (chart) %s\nenv (mapped) %s", b.pod.argv, mustJSON(b.pod.chartEnv), mustJSON(b.pod.env))

		checkEnvNames(t, b.pluginBin, b.pod.chartEnv)
		if got := b.pod.argv[1:]; len(got) != 1 || got[0] != "serve" {
			t.Errorf("container args %q, want [serve]", got)
		}
		want := map[string]string{
			"VAULT_ADDR":            b.vault.Addr,
			"VAULT_KMS_KEY_NAMES":   oldKey,
			"VAULT_KMS_AUTH_METHOD": "kubernetes",
			"VAULT_KMS_AUTH_ROLE":   vaultRole,
			// The projected token, where the projected volume puts it.
			"VAULT_KMS_SA_TOKEN_FILE":        b.pod.tokenFile,
			"VAULT_KMS_KEY_REFRESH_INTERVAL": refreshEnv,
			"VAULT_KMS_STATUS_GRACE":         graceEnv,
		}
		for k, v := range want {
			if b.pod.env[k] != v {
				t.Errorf("the plugin gets %s=%q, want %q", k, b.pod.env[k], v)
			}
		}
		// The socket is where the README's EncryptionConfiguration looks.
		if b.pod.socket != socketOnNode {
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

		// The chart's ServiceAccount, then the kubelet's TokenRequest.
		sa := writeFile(t, filepath.Join(b.logDir, "serviceaccount.yaml"), b.rendered.yamlOf(func(d doc) bool { return d.kind == "ServiceAccount" }))
		if out, err := b.kubectl(t, "apply", "-f", sa); err != nil {
			t.Fatalf("kubectl apply the chart's ServiceAccount: %v\n%s", err, out)
		}
		jwt = b.mintToken(t, b.pod)

		d := b.startPlugin(t)
		t.Logf("plugin serving its socket (/livez ok) after %s", d.Round(10*time.Millisecond))
		if fi, err := os.Lstat(b.pod.socket); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket %s: %v, want a socket with mode 0600", b.pod.socket, err)
		}
		// Not ready: Vault has no Kubernetes auth yet.
		code, body, err := httpGet(b.pod.readyURL)
		if err != nil || code == 200 {
			t.Fatalf("readiness probe before Vault's Kubernetes auth is set up: %d %v %s", code, err, body)
		}
		t.Logf("readiness before Kubernetes auth exists in Vault: %d %s", code, strings.TrimSpace(body))
	})

	stage("2_vault_kubernetes_auth_via_TokenReview", func(t *testing.T) {
		c := b.vault.Client()
		if err := c.Sys().EnableAuthWithOptions("kubernetes", &api.EnableAuthOptions{Type: "kubernetes"}); err != nil {
			t.Fatal(err)
		}
		// No token_reviewer_jwt: Vault reviews the client's JWT with that JWT.
		b.vaultWrite(t, "auth/kubernetes/config", map[string]any{
			"kubernetes_host":      fmt.Sprintf("https://127.0.0.1:%d", b.apiserverPort),
			"kubernetes_ca_cert":   b.pki.caPEM,
			"disable_local_ca_jwt": true,
		})
		role := func(mount, name, aud string) {
			b.vaultWrite(t, "auth/"+mount+"/role/"+name, map[string]any{
				"bound_service_account_names":      roleSA,
				"bound_service_account_namespaces": roleSANS,
				"audience":                         aud,
				"token_policies":                   vaultRole,
				"token_ttl":                        "1h",
				"token_max_ttl":                    "24h",
			})
		}
		role("kubernetes", vaultRole, apiAudience)
		login := func(mount, role, jwt string) error {
			lc := b.vault.Client()
			lc.ClearToken()
			_, err := lc.Logical().Write("auth/"+mount+"/login", map[string]any{"role": role, "jwt": jwt})
			return err
		}
		// Without the chart's system:auth-delegator binding the token cannot
		// review itself.
		if err := login("kubernetes", vaultRole, jwt); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("login before the ClusterRoleBinding: %v, want permission denied", err)
		}
		crb := writeFile(t, filepath.Join(b.logDir, "clusterrolebinding.yaml"), b.rendered.yamlOf(func(d doc) bool { return d.kind == "ClusterRoleBinding" }))
		if out, err := b.kubectl(t, "apply", "-f", crb); err != nil {
			t.Fatalf("kubectl apply the chart's ClusterRoleBinding: %v\n%s", err, out)
		}
		waitFor(t, 20*time.Second, "Vault login with the pod's token", func() error { return login("kubernetes", vaultRole, jwt) })

		// The chart's default audience, vault (the README's role): a token
		// Vault reviews with itself is refused by the apiserver, binding or
		// not; Vault needs a token_reviewer_jwt then (chart README,
		// "Audience and token review").
		vaultAud := b.tokenFor(t, b.pod.saNS, b.pod.saName, readmeAud)
		role("kubernetes", "readme-audience", readmeAud)
		if err := login("kubernetes", "readme-audience", vaultAud); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("login with audience %q and no token_reviewer_jwt: %v, want permission denied", readmeAud, err)
		}
		if err := c.Sys().EnableAuthWithOptions("kubernetes-reviewer", &api.EnableAuthOptions{Type: "kubernetes"}); err != nil {
			t.Fatal(err)
		}
		b.vaultWrite(t, "auth/kubernetes-reviewer/config", map[string]any{
			"kubernetes_host":      fmt.Sprintf("https://127.0.0.1:%d", b.apiserverPort),
			"kubernetes_ca_cert":   b.pki.caPEM,
			"disable_local_ca_jwt": true,
			// The chart's account is bound to system:auth-delegator.
			"token_reviewer_jwt": b.tokenFor(t, b.pod.saNS, b.pod.saName, ""),
		})
		role("kubernetes-reviewer", vaultRole, readmeAud)
		if err := login("kubernetes-reviewer", vaultRole, vaultAud); err != nil {
			t.Fatalf("login with audience %q and a token_reviewer_jwt: %v", readmeAud, err)
		}
		t.Logf("audience %q: refused without token_reviewer_jwt, accepted with one; the plugin uses audience %q without one", readmeAud, apiAudience)

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
	})

	var v2Config string
	stage("3_apiserver_encrypts_secrets_with_kms_v2", func(t *testing.T) {
		// A Secret written before encryption: plain protobuf in etcd.
		b.createSecret(t, "before-encryption")
		raw := b.etcdGet(t, testNS, "before-encryption")
		if !bytes.HasPrefix(raw, []byte("k8s\x00")) || !bytes.Contains(raw, b.written[testNS+"/before-encryption"]["password"]) {
			t.Fatalf("before encryption etcd should hold the plain Secret, got %q", head(raw))
		}

		v2Config = onNode(t, readmeEncryptionConfig(t), b.hostDir)
		cfg := writeFile(t, filepath.Join(b.logDir, "encryption-config-v2.yaml"), v2Config)
		t.Logf("kube-apiserver stopped in %s", b.stopAPIServer(t).Round(10*time.Millisecond))
		t.Logf("kube-apiserver with the README's EncryptionConfiguration ready in %s:\n%s", b.startAPIServer(t, cfg).Round(10*time.Millisecond), v2Config)
		if code, body, _ := b.apiGet("/readyz/kms-providers"); code != 200 {
			t.Fatalf("/readyz/kms-providers: %d %s", code, body)
		}

		// kubectl create secret, as in the README.
		name := "first-encrypted"
		pw := "hunter2-" + hex.EncodeToString([]byte(time.Now().Format("150405.000")))
		if out, err := b.kubectl(t, "create", "secret", "generic", name, "-n", testNS, "--from-literal=password="+pw); err != nil {
			t.Fatalf("kubectl create secret: %v\n%s", err, out)
		}
		b.written[testNS+"/"+name] = map[string][]byte{"password": []byte(pw)}
		raw = b.etcdGet(t, testNS, name)
		keyID := b.checkStoredV2(t, name, raw, oldKey+"/v1/", oldKey+":vault:v1:")
		if st := b.statusKeyID(t); st != keyID {
			t.Fatalf("etcd's key_id %q is not the plugin's Status key_id %q", keyID, st)
		}
		t.Logf("etcd holds %q... (key_id %s)", head(raw), keyID)
		out, err := b.kubectl(t, "get", "secret", name, "-n", testNS, "-o", "jsonpath={.data.password}")
		if err != nil || strings.TrimSpace(out) != b64([]byte(pw)) {
			t.Fatalf("kubectl get secret: %v: %q", err, out)
		}
		// And the Secret written before still reads (identity provider).
		b.checkSecretsRead(t)
	})

	stage("4_server_dry_run_of_the_whole_chart", func(t *testing.T) {
		noMonitor := func(d doc) bool { return d.kind != "ServiceMonitor" }
		f := writeFile(t, filepath.Join(b.logDir, "dry-run-default.yaml"), b.rendered.yamlOf(noMonitor))
		dryRun(t, b, f, len(b.rendered.docs))

		// Every optional object: metrics Service, ServiceMonitor (left out:
		// its CRD, monitoring.coreos.com, is not installed), caBundle ConfigMap.
		all := writeFile(t, filepath.Join(b.logDir, "vault-values-all.yaml"),
			fmt.Sprintf(vaultValues, "  - "+oldKey, b.vault.Addr)+
				"metrics:\n  serviceMonitor:\n    enabled: true\ncaBundle: |\n"+indent(b.pki.caPEM, "  "))
		r := renderChart(t, all)
		kinds := map[string]int{}
		for _, d := range r.docs {
			kinds[d.kind]++
		}
		if kinds["ServiceMonitor"] != 1 || kinds["Service"] != 1 || kinds["ConfigMap"] != 2 {
			t.Fatalf("the render with every option has %v", kinds)
		}
		f = writeFile(t, filepath.Join(b.logDir, "dry-run-all-options.yaml"), r.yamlOf(noMonitor))
		dryRun(t, b, f, len(r.docs)-1)
		t.Log("ServiceMonitor left out of the server dry run: its CRD (monitoring.coreos.com/v1) is not installed")
	})

	stage("5_key_rotation", func(t *testing.T) {
		oldKeyID := b.statusKeyID(t)
		before := b.apiMetrics(t).labelValues("apiserver_envelope_encryption_key_id_hash_total", "key_id_hash",
			map[string]string{"transformation_type": "to_storage", "provider_name": "vault"})
		if _, ok := before[keyIDHash(oldKeyID)]; !ok {
			t.Fatalf("apiserver_envelope_encryption_key_id_hash_total has no to_storage series for the current key_id: %v", before)
		}
		if v := b.rotate(t, oldKey); v != 2 {
			t.Fatalf("rotated to version %d, want 2", v)
		}
		rotated := time.Now()
		// New writes carry the new key_id within the apiserver's Status
		// interval (plus the plugin's refresh interval).
		var newKeyID string
		limit := apiserverStatusInterval + 3*parseDuration(t, refreshEnv) + 10*time.Second
		waitEvery(t, limit, 3*time.Second, "a write under the rotated key", func() error {
			name := b.uniqueName("rotation")
			b.createSecret(t, name)
			o, err := decodeV2(b.etcdGet(t, testNS, name))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(o.KeyID, oldKey+"/v2/") {
				newKeyID = b.checkStoredV2(t, name, b.etcdGet(t, testNS, name), oldKey+"/v2/", oldKey+":vault:v2:")
				return nil
			}
			if o.KeyID != oldKeyID {
				t.Fatalf("Secret %s stored under key_id %q, neither the old nor the new one", name, o.KeyID)
			}
			return fmt.Errorf("still under %s", o.KeyID)
		})
		t.Logf("new writes under %s %s after the rotation (status interval %s)", newKeyID, time.Since(rotated).Round(time.Second), apiserverStatusInterval)
		after := b.apiMetrics(t).labelValues("apiserver_envelope_encryption_key_id_hash_total", "key_id_hash",
			map[string]string{"transformation_type": "to_storage", "provider_name": "vault"})
		if after[keyIDHash(newKeyID)] < 1 || before[keyIDHash(newKeyID)] != 0 {
			t.Fatalf("apiserver_envelope_encryption_key_id_hash_total{to_storage} did not move to the new key_id: before %v, after %v", before, after)
		}
		b.checkSecretsRead(t)
		n := b.rewriteAll(t)
		count, deks := b.scanAllV2(t, oldKey+"/v2/", oldKey+":vault:v2:")
		if count != n {
			t.Fatalf("rewrote %d Secrets, etcd holds %d", n, count)
		}
		t.Logf("rewrote %d Secrets: all under %s (%d distinct DEK ciphertexts), none under the old version", n, newKeyID, len(deks))
		b.checkSecretsRead(t)
	})

	stage("6_plugin_sigkill_and_restart", func(t *testing.T) {
		old := b.plugin
		old.stop(syscall.SIGKILL, 10*time.Second)
		if old.exitCode() != -1 {
			t.Fatalf("plugin exit %v, want killed by SIGKILL", old.err)
		}
		if !isSocket(b.pod.socket) {
			t.Fatalf("no socket left at %s after SIGKILL", b.pod.socket)
		}
		if c, err := net.DialTimeout("unix", b.pod.socket, time.Second); err == nil {
			c.Close()
			t.Fatal("something still answers on the socket")
		}
		d := b.startPlugin(t)
		d += b.waitPluginReady(t, 30*time.Second)
		t.Logf("restarted over the leftover socket, ready in %s", d.Round(10*time.Millisecond))
		// The apiserver reaches the new process: its next Status (a /readyz
		// check calls it once the last result is 20s old).
		d = waitFor(t, 90*time.Second, "apiserver's Status call to the new plugin", func() error {
			if code, body, err := b.apiGet("/readyz/kms-providers"); err != nil || code != 200 {
				return fmt.Errorf("/readyz/kms-providers: %d %v %s", code, err, body)
			}
			if n := b.pluginMetrics(t).grpcCalls("v2", "Status", "OK"); n < 1 {
				return fmt.Errorf("no Status call yet")
			}
			return nil
		})
		t.Logf("the apiserver called the new plugin's Status %s after it was ready", d.Round(100*time.Millisecond))
		name := b.uniqueName("after-plugin-restart")
		b.createSecret(t, name)
		b.checkStoredV2(t, name, b.etcdGet(t, testNS, name), oldKey+"/v2/", oldKey+":vault:v2:")
		b.checkSecretsRead(t)
	})

	stage("7_vault_outage", func(t *testing.T) {
		pluginPID, apiPID := b.plugin.pid(), b.apiserver.pid()
		b.saveVaultLog()
		stopped := time.Now()
		b.vault.Stop()
		waitFor(t, 30*time.Second, "plugin not ready while Vault is down", func() error {
			if code, _, err := httpGet(b.pod.readyURL); err != nil || code == 200 {
				return fmt.Errorf("readiness %d %v", code, err)
			}
			return nil
		})
		_, body, _ := httpGet(b.pod.readyURL)
		t.Logf("plugin readiness with Vault down: %s", strings.TrimSpace(body))
		waitFor(t, 60*time.Second, "apiserver's kms-providers check failing", func() error {
			if code, _, err := b.apiGet("/readyz/kms-providers"); err != nil || code == 200 {
				return fmt.Errorf("/readyz/kms-providers: %d %v", code, err)
			}
			return nil
		})
		code, verbose, _ := b.apiGet("/readyz?verbose")
		if code == 200 || !strings.Contains(verbose, "[-]kms-providers failed") {
			t.Fatalf("/readyz?verbose with Vault down: %d\n%s", code, verbose)
		}
		t.Logf("apiserver /readyz reports the KMS provider unhealthy %s after Vault stopped", time.Since(stopped).Round(time.Second))
		b.checkSecretsRead(t)

		// Once the grace has passed, the plugin's Status fails while Vault
		// is down (an answer with the old key_id would make the apiserver
		// extend its data key's write lifetime forever: k8s.io/apiserver's
		// rotateDEKOnKeyIDChange).
		// Writes go on with the data key the apiserver holds until 3 minutes
		// past the last healthy Status, then fail.
		out, _ := b.probe(t, "v2")
		t.Logf("the plugin's Status with Vault down: %s", out)
		if strings.Contains(out, "healthz=") || !strings.Contains(out, "Unavailable") {
			t.Fatalf("the plugin's Status with Vault down answered %q; want an Unavailable error", out)
		}
		var writeErr error
		var failed string
		waitEvery(t, 4*time.Minute+30*time.Second, 5*time.Second, "writes failing while Vault is down", func() error {
			failed = b.uniqueName("during-outage")
			if err := b.tryCreateSecret(t, failed); err != nil {
				writeErr = err
				return nil
			}
			return fmt.Errorf("write accepted %s after Vault stopped", time.Since(stopped).Round(time.Second))
		})
		down := time.Since(stopped)
		t.Logf("writes fail %s after Vault stopped: %v", down.Round(time.Second), writeErr)
		if down < apiserverStatusInterval {
			t.Fatalf("writes failed after %s, before a status interval", down)
		}
		if !isInternal(writeErr) || !strings.Contains(writeErr.Error(), "expired") {
			t.Fatalf("write error %v: want an internal error naming the expired data key", writeErr)
		}
		if _, err := b.client.CoreV1().Secrets(testNS).Get(ctx(t), failed, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("the refused Secret %s: %v, want NotFound", failed, err)
		}
		b.checkSecretsRead(t)
		if code, _, _ := b.apiGet("/readyz/kms-providers"); code == 200 {
			t.Fatal("/readyz/kms-providers ok while Vault is down")
		}

		// Vault back, same storage: everything recovers on its own.
		b.vault.Start()
		b.vaultSaved = 0
		back := time.Now()
		b.waitPluginReady(t, 60*time.Second)
		waitFor(t, 60*time.Second, "apiserver's kms-providers check ok", func() error {
			if code, body, err := b.apiGet("/readyz/kms-providers"); err != nil || code != 200 {
				return fmt.Errorf("%d %v %s", code, err, body)
			}
			return nil
		})
		var name string
		waitEvery(t, 60*time.Second, 2*time.Second, "a write after Vault is back", func() error {
			name = b.uniqueName("after-outage")
			return b.tryCreateSecret(t, name)
		})
		t.Logf("writes accepted again %s after Vault restarted", time.Since(back).Round(100*time.Millisecond))
		b.checkStoredV2(t, name, b.etcdGet(t, testNS, name), oldKey+"/v2/", oldKey+":vault:v2:")
		if !b.plugin.running() || b.plugin.pid() != pluginPID || !b.apiserver.running() || b.apiserver.pid() != apiPID {
			t.Fatal("the plugin or the apiserver was restarted")
		}
		b.checkNothingLost(t)
		t.Logf("no Secret lost: %d in %s, contents equal", len(b.written), testNS)
	})

	stage("8_kms_v1", func(t *testing.T) {
		// A KMS v1 configuration (v1 provider, identity) cannot read the
		// KMS v2 data already in etcd, and an apiserver that cannot list
		// Secrets never gets ready. A v2 provider of the same name may not
		// follow a v1 one. So the v1 apiserver gets a storage prefix of its
		// own in the same etcd.
		const v1Prefix = "/registry-kms-v1"
		v1 := v1Of(t, v2Config)
		cfg := writeFile(t, filepath.Join(b.logDir, "encryption-config-v1.yaml"), v1)
		b.stopAPIServer(t)
		t.Logf("kube-apiserver with KMSv1=true, the README's v1 provider and --etcd-prefix=%s ready in %s:\n%s", v1Prefix,
			b.startAPIServer(t, cfg, "--feature-gates=KMSv1=true", "--etcd-prefix="+v1Prefix).Round(10*time.Millisecond), v1)
		code, verbose, _ := b.apiGet("/readyz?verbose")
		if code != 200 || !strings.Contains(verbose, "[+]kms-provider-0 ok") {
			t.Fatalf("/readyz?verbose: %d\n%s", code, verbose)
		}
		if _, err := b.client.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		before := b.pluginMetrics(t).grpcCalls("v1beta1", "Encrypt", "OK")
		data := newSecretData("kms-v1")
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kms-v1", Namespace: testNS}, Data: data}
		if _, err := b.client.CoreV1().Secrets(testNS).Create(ctx(t), sec, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Secret kms-v1: %v", err)
		}
		raw := b.etcdGetPrefix(t, v1Prefix, testNS, "kms-v1")
		dek, err := decodeV1(raw)
		if err != nil {
			t.Fatalf("etcd value of kms-v1: %v", err)
		}
		if !bytes.HasPrefix(dek, []byte(oldKey+":vault:v2:")) {
			t.Fatalf("the v1 DEK ciphertext is %q, want the plugin's %s:vault:v2:...", head(dek), oldKey)
		}
		if bytes.Contains(raw, data["password"]) {
			t.Fatal("etcd holds the plaintext of kms-v1")
		}
		if after := b.pluginMetrics(t).grpcCalls("v1beta1", "Encrypt", "OK"); after <= before {
			t.Fatalf("no v1beta1 Encrypt reached the plugin (%v → %v)", before, after)
		}
		got, err := b.client.CoreV1().Secrets(testNS).Get(ctx(t), "kms-v1", metav1.GetOptions{})
		if err != nil || !bytes.Equal(got.Data["password"], data["password"]) {
			t.Fatalf("read kms-v1 back: %v %q", err, got.Data)
		}
		t.Logf("etcd holds %q... for kms-v1 (the plugin's DEK ciphertext %q...)", head(raw), head(dek))
	})

	stage("9_move_to_a_new_key", func(t *testing.T) {
		// Vault: the new key, and the policy covering both.
		b.vaultWrite(t, "transit/keys/"+newKey, nil)
		if err := b.vault.Client().Sys().PutPolicy(vaultRole, testvault.KMSPolicy("transit", newKey, oldKey)); err != nil {
			t.Fatal(err)
		}
		// keyNames [new, old], rolled out as the DaemonSet does: SIGTERM, new pod.
		values := writeFile(t, filepath.Join(b.logDir, "vault-values-new-key.yaml"),
			fmt.Sprintf(vaultValues, "  - "+newKey+"\n  - "+oldKey, b.vault.Addr))
		b.rendered = renderChart(t, values)
		pod := planPod(t, b.rendered, b.pluginBin, b.hostDir, filepath.Join(work, "pod"))
		if got := pod.env["VAULT_KMS_KEY_NAMES"]; got != newKey+","+oldKey {
			t.Fatalf("VAULT_KMS_KEY_NAMES=%q", got)
		}
		// The whole control plane restarts: the v1 apiserver stops, the
		// DaemonSet's pod is replaced (SIGTERM, then a pod with the new
		// settings; the projected token file is still valid), and the
		// apiserver comes back on the README's KMS v2 configuration and the
		// main storage. They start together: the plugin's Vault login needs
		// the apiserver (TokenReview), the apiserver's readiness needs the
		// plugin. The fresh apiserver has no cached data keys: listing the
		// Secrets for its watch cache decrypts every old one through the new
		// plugin, with the old key.
		b.stopAPIServer(t)
		d, _ := b.plugin.stop(syscall.SIGTERM, 30*time.Second)
		if b.plugin.exitCode() != 0 || isSocket(b.pod.socket) {
			t.Fatalf("SIGTERM: exit %v, socket left: %v", b.plugin.err, isSocket(b.pod.socket))
		}
		t.Logf("old plugin drained and exited in %s, socket removed", d.Round(10*time.Millisecond))
		if pod.tokenFile != b.pod.tokenFile {
			t.Fatalf("the projected token moved: %s → %s", b.pod.tokenFile, pod.tokenFile)
		}
		b.pod = pod
		b.startPlugin(t)
		cfg := filepath.Join(b.logDir, "encryption-config-v2.yaml")
		t.Logf("kube-apiserver back on the README's KMS v2 configuration, ready in %s",
			b.startAPIServer(t, cfg).Round(10*time.Millisecond))
		b.waitPluginReady(t, 60*time.Second)
		if id := b.statusKeyID(t); !strings.HasPrefix(id, newKey+"/v1/") {
			t.Fatalf("Status key_id %q, want %s/v1/...", id, newKey)
		}
		_, deks := b.scanAllV2(t, oldKey+"/v2/", oldKey+":vault:v2:")
		b.checkSecretsRead(t)
		calls := b.pluginMetrics(t).grpcCalls("v2", "Decrypt", "OK")
		if calls < float64(len(deks)) {
			t.Fatalf("old Secrets (%d DEK ciphertexts under %s) read with %v v2 Decrypt calls to the new plugin", len(deks), oldKey, calls)
		}
		t.Logf("all %d old Secrets read; the new plugin decrypted their %d DEK ciphertext(s) with %s (%v Decrypt calls)", len(b.written), len(deks), oldKey, calls)
		name := b.uniqueName("under-new-key")
		b.createSecret(t, name)
		b.checkStoredV2(t, name, b.etcdGet(t, testNS, name), newKey+"/v1/", newKey+":vault:v1:")

		n := b.rewriteAll(t)
		count, deks := b.scanAllV2(t, newKey+"/v1/", newKey+":vault:v1:")
		if count != n {
			t.Fatalf("rewrote %d Secrets, etcd holds %d", n, count)
		}
		t.Logf("rewrote %d Secrets: all under %s (%d distinct DEK ciphertexts), none under %s", n, newKey, len(deks), oldKey)
		b.checkNothingLost(t)
	})
}

// dryRun runs `kubectl apply --dry-run=server` on a rendered file and
// checks that every object went through.
func dryRun(t testing.TB, b *bed, file string, objects int) {
	t.Helper()
	out, err := b.kubectl(t, "apply", "--dry-run=server", "-f", file)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -f %s: %v\n%s", filepath.Base(file), err, out)
	}
	if n := strings.Count(out, "(server dry run)"); n != objects {
		t.Fatalf("server dry run of %d objects reported %d:\n%s", objects, n, out)
	}
	t.Logf("kubectl apply --dry-run=server -f %s:\n%s", filepath.Base(file), strings.TrimSpace(out))
}

func (b *bed) apiMetrics(t testing.TB) metrics {
	t.Helper()
	return scrape(t, func() (int, string, error) { return b.apiGet("/metrics") })
}

// vaultWrite writes to Vault as root, failing t (not the test owning the
// server) on error.
func (b *bed) vaultWrite(t testing.TB, path string, data map[string]any) *api.Secret {
	t.Helper()
	s, err := b.vault.Client().Logical().Write(path, data)
	if err != nil {
		t.Fatalf("vault write %s: %v", path, err)
	}
	return s
}

// rotate rotates a transit key and returns its new latest version.
func (b *bed) rotate(t testing.TB, key string) int {
	t.Helper()
	b.vaultWrite(t, "transit/keys/"+key+"/rotate", nil)
	s, err := b.vault.Client().Logical().Read("transit/keys/" + key)
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
func (b *bed) saveVaultLog() {
	if b.vault == nil {
		return
	}
	l := b.vault.Log()
	if len(l) < b.vaultSaved {
		b.vaultSaved = 0
	}
	f, err := os.OpenFile(filepath.Join(b.logDir, "vault.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteString(l[b.vaultSaved:])
	b.vaultSaved = len(l)
}

// collectLogs keeps the logs of a failed run (or of any run with
// VAULT_KMS_E2E_KEEP=1) in /tmp/vault-kms-e2e-<timestamp>.
func (b *bed) collectLogs(t testing.TB) {
	b.saveVaultLog()
	if !t.Failed() && os.Getenv("VAULT_KMS_E2E_KEEP") == "" {
		return
	}
	dst := filepath.Join(os.TempDir(), "vault-kms-e2e-"+time.Now().Format("20060102-150405"))
	if err := os.CopyFS(dst, os.DirFS(b.logDir)); err != nil {
		t.Logf("copy the logs to %s: %v (they are in %s until the test's cleanup)", dst, err, b.logDir)
		return
	}
	t.Logf("logs (kube-apiserver, etcd, Vault, plugin, kubectl) and the rendered chart, values and EncryptionConfigurations: %s", dst)
}
