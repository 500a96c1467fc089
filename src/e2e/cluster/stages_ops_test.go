package cluster

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// keyRotation rotates the transit key: new writes move to the new key_id
// within the apiserver's Status interval, and a rewrite moves every
// Secret.
func (b *clusterRun) keyRotation(t *testing.T) {
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
	bed.WaitEvery(t, limit, 3*time.Second, "a write under the rotated key", func() error {
		name := b.uniqueName("rotation")
		b.createSecret(t, name)
		o, err := decodeV2(b.EtcdGet(t, testNS, name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(o.KeyID, oldKey+"/v2/") {
			newKeyID = b.checkStoredV2(t, name, b.EtcdGet(t, testNS, name), oldKey+"/v2/", oldKey+":vault:v2:")
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
}

// pluginSIGKILLAndRestart kills the plugin: a new one starts over the
// leftover socket and the apiserver reaches it.
func (b *clusterRun) pluginSIGKILLAndRestart(t *testing.T) {
	old := b.plugin
	old.Stop(syscall.SIGKILL, 10*time.Second)
	if old.ExitCode() != -1 {
		t.Fatalf("plugin exit %v, want killed by SIGKILL", old.Err())
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
	d = bed.WaitFor(t, 90*time.Second, "apiserver's Status call to the new plugin", func() error {
		if code, body, err := b.APIGet("/readyz/kms-providers"); err != nil || code != 200 {
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
	b.checkStoredV2(t, name, b.EtcdGet(t, testNS, name), oldKey+"/v2/", oldKey+":vault:v2:")
	b.checkSecretsRead(t)
}

// vaultOutage stops Vault: the plugin and the apiserver report it, reads
// go on, writes fail once the data key expires, and all recovers when
// Vault is back, nothing lost.
func (b *clusterRun) vaultOutage(t *testing.T) {
	pluginPID, apiPID := b.plugin.PID(), b.APIServer.PID()
	stopped := b.stopVaultAndSeeItReported(t)
	b.writesFailOnceTheDataKeyExpires(t, stopped)
	b.restartVaultAndSeeWritesRecover(t)
	if !b.plugin.Running() || b.plugin.PID() != pluginPID || !b.APIServer.Running() || b.APIServer.PID() != apiPID {
		t.Fatal("the plugin or the apiserver was restarted")
	}
	b.checkNothingLost(t)
	t.Logf("no Secret lost: %d in %s, contents equal", len(b.written), testNS)
}

// stopVaultAndSeeItReported stops Vault: the plugin's readiness and the
// apiserver's kms-providers check fail, and Secrets still read. It
// returns when Vault stopped.
func (b *clusterRun) stopVaultAndSeeItReported(t *testing.T) time.Time {
	b.saveVaultLog()
	stopped := time.Now()
	b.Vault.Stop()
	bed.WaitFor(t, 30*time.Second, "plugin not ready while Vault is down", func() error {
		if code, _, err := bed.HTTPGet(b.pod.readyURL); err != nil || code == 200 {
			return fmt.Errorf("readiness %d %v", code, err)
		}
		return nil
	})
	_, body, _ := bed.HTTPGet(b.pod.readyURL)
	t.Logf("plugin readiness with Vault down: %s", strings.TrimSpace(body))
	bed.WaitFor(t, 60*time.Second, "apiserver's kms-providers check failing", func() error {
		if code, _, err := b.APIGet("/readyz/kms-providers"); err != nil || code == 200 {
			return fmt.Errorf("/readyz/kms-providers: %d %v", code, err)
		}
		return nil
	})
	code, verbose, _ := b.APIGet("/readyz?verbose")
	if code == 200 || !strings.Contains(verbose, "[-]kms-providers failed") {
		t.Fatalf("/readyz?verbose with Vault down: %d\n%s", code, verbose)
	}
	t.Logf("apiserver /readyz reports the KMS provider unhealthy %s after Vault stopped", time.Since(stopped).Round(time.Second))
	// What a load balancer in front of apiservers should check (README,
	// Operate): /readyz without the KMS check, and /livez, stay ok, while
	// /healthz fails with the KMS provider.
	for path, want := range map[string]bool{"/readyz?exclude=kms-providers": true, "/livez": true, "/healthz": false} {
		if code, body, err := b.APIGet(path); err != nil || (code == 200) != want {
			t.Fatalf("apiserver %s with Vault down past the grace: %d %v %s; want ok=%v", path, code, err, strings.TrimSpace(body), want)
		}
	}
	b.checkSecretsRead(t)
	return stopped
}

// writesFailOnceTheDataKeyExpires: with Vault down since stopped, the
// plugin's Status fails, and writes go on only until the apiserver's data
// key expires; a refused Secret is not stored.
func (b *clusterRun) writesFailOnceTheDataKeyExpires(t *testing.T, stopped time.Time) {
	// Once the grace has passed, the plugin's Status fails while Vault is
	// down (an answer with the old key_id would make the apiserver extend
	// its data key's write lifetime forever: k8s.io/apiserver's
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
	bed.WaitEvery(t, 4*time.Minute+30*time.Second, 5*time.Second, "writes failing while Vault is down", func() error {
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
	if _, err := b.Client.CoreV1().Secrets(testNS).Get(ctx(t), failed, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the refused Secret %s: %v, want NotFound", failed, err)
	}
	b.checkSecretsRead(t)
	if code, _, _ := b.APIGet("/readyz/kms-providers"); code == 200 {
		t.Fatal("/readyz/kms-providers ok while Vault is down")
	}
}

// restartVaultAndSeeWritesRecover starts Vault again on the same storage:
// the plugin, the apiserver and writes recover on their own.
func (b *clusterRun) restartVaultAndSeeWritesRecover(t *testing.T) {
	b.Vault.Start()
	b.vaultSaved = 0
	back := time.Now()
	b.waitPluginReady(t, 60*time.Second)
	bed.WaitFor(t, 60*time.Second, "apiserver's kms-providers check ok", func() error {
		if code, body, err := b.APIGet("/readyz/kms-providers"); err != nil || code != 200 {
			return fmt.Errorf("%d %v %s", code, err, body)
		}
		return nil
	})
	var name string
	bed.WaitEvery(t, 60*time.Second, 2*time.Second, "a write after Vault is back", func() error {
		name = b.uniqueName("after-outage")
		return b.tryCreateSecret(t, name)
	})
	t.Logf("writes accepted again %s after Vault restarted", time.Since(back).Round(100*time.Millisecond))
	b.checkStoredV2(t, name, b.EtcdGet(t, testNS, name), oldKey+"/v2/", oldKey+":vault:v2:")
}

// kmsV1 runs the apiserver with the README's KMS v1 configuration on a
// storage prefix of its own: a Secret goes through the plugin's v1beta1
// API.
func (b *clusterRun) kmsV1(t *testing.T) {
	// A KMS v1 configuration (v1 provider, identity) cannot read the
	// KMS v2 data already in etcd, and an apiserver that cannot list
	// Secrets never gets ready. A v2 provider of the same name may not
	// follow a v1 one. So the v1 apiserver gets a storage prefix of its
	// own in the same etcd.
	const v1Prefix = "/registry-kms-v1"
	v1 := v1Of(t, b.v2Config)
	cfg := bed.WriteFile(t, filepath.Join(b.LogDir, "encryption-config-v1.yaml"), v1)
	b.StopAPIServer()
	t.Logf("kube-apiserver with KMSv1=true, the README's v1 provider and --etcd-prefix=%s ready in %s:\n%s", v1Prefix,
		b.StartAPIServer(t, cfg, "--feature-gates=KMSv1=true", "--etcd-prefix="+v1Prefix).Round(10*time.Millisecond), v1)
	code, verbose, _ := b.APIGet("/readyz?verbose")
	if code != 200 || !strings.Contains(verbose, "[+]kms-provider-0 ok") {
		t.Fatalf("/readyz?verbose: %d\n%s", code, verbose)
	}
	if _, err := b.Client.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := b.pluginMetrics(t).grpcCalls("v1beta1", "Encrypt", "OK")
	data := newSecretData("kms-v1")
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kms-v1", Namespace: testNS}, Data: data}
	if _, err := b.Client.CoreV1().Secrets(testNS).Create(ctx(t), sec, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Secret kms-v1: %v", err)
	}
	raw := b.EtcdGetPrefix(t, v1Prefix, testNS, "kms-v1")
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
	got, err := b.Client.CoreV1().Secrets(testNS).Get(ctx(t), "kms-v1", metav1.GetOptions{})
	if err != nil || !bytes.Equal(got.Data["password"], data["password"]) {
		t.Fatalf("read kms-v1 back: %v %q", err, got.Data)
	}
	t.Logf("etcd holds %q... for kms-v1 (the plugin's DEK ciphertext %q...)", head(raw), head(dek))
}

// moveToANewKey moves to a new key as the README says (keyNames [new,
// old]): the whole control plane restarts, old Secrets read with the old
// key, new ones and rewrites use the new key.
func (b *clusterRun) moveToANewKey(t *testing.T) {
	b.restartOnTheNewKey(t)
	b.oldSecretsReadNewOnesUseTheNewKey(t)
}

// restartOnTheNewKey adds the new key in Vault and restarts the control
// plane with keyNames [new, old]: the old plugin drains on SIGTERM, the
// new one serves the new key.
func (b *clusterRun) restartOnTheNewKey(t *testing.T) {
	// Vault: the new key, and the policy covering both.
	b.vaultWrite(t, "transit/keys/"+newKey, nil)
	if err := b.Vault.Client().Sys().PutPolicy(vaultRole, testvault.KMSPolicy("transit", newKey, oldKey)); err != nil {
		t.Fatal(err)
	}
	// keyNames [new, old], rolled out as the DaemonSet does: SIGTERM, new pod.
	values := bed.WriteFile(t, filepath.Join(b.LogDir, "vault-values-new-key.yaml"),
		fmt.Sprintf(vaultValues, "  - "+newKey+"\n  - "+oldKey, b.Vault.Addr))
	b.rendered = renderChart(t, values)
	pod := planPod(t, b.rendered, b.PluginBin, b.hostDir, filepath.Join(b.Dir, "pod"))
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
	b.StopAPIServer()
	d, _ := b.plugin.Stop(syscall.SIGTERM, 30*time.Second)
	if b.plugin.ExitCode() != 0 || isSocket(b.pod.socket) {
		t.Fatalf("SIGTERM: exit %v, socket left: %v", b.plugin.Err(), isSocket(b.pod.socket))
	}
	t.Logf("old plugin drained and exited in %s, socket removed", d.Round(10*time.Millisecond))
	if pod.tokenFile != b.pod.tokenFile {
		t.Fatalf("the projected token moved: %s → %s", b.pod.tokenFile, pod.tokenFile)
	}
	b.pod = pod
	b.startPlugin(t)
	cfg := filepath.Join(b.LogDir, "encryption-config-v2.yaml")
	t.Logf("kube-apiserver back on the README's KMS v2 configuration, ready in %s",
		b.StartAPIServer(t, cfg).Round(10*time.Millisecond))
	b.waitPluginReady(t, 60*time.Second)
	if id := b.statusKeyID(t); !strings.HasPrefix(id, newKey+"/v1/") {
		t.Fatalf("Status key_id %q, want %s/v1/...", id, newKey)
	}
}

// oldSecretsReadNewOnesUseTheNewKey: the new plugin decrypts the old
// Secrets with the old key; a new Secret, and then every rewritten one,
// is under the new key, and nothing is lost.
func (b *clusterRun) oldSecretsReadNewOnesUseTheNewKey(t *testing.T) {
	_, deks := b.scanAllV2(t, oldKey+"/v2/", oldKey+":vault:v2:")
	b.checkSecretsRead(t)
	calls := b.pluginMetrics(t).grpcCalls("v2", "Decrypt", "OK")
	if calls < float64(len(deks)) {
		t.Fatalf("old Secrets (%d DEK ciphertexts under %s) read with %v v2 Decrypt calls to the new plugin", len(deks), oldKey, calls)
	}
	t.Logf("all %d old Secrets read; the new plugin decrypted their %d DEK ciphertext(s) with %s (%v Decrypt calls)", len(b.written), len(deks), oldKey, calls)
	name := b.uniqueName("under-new-key")
	b.createSecret(t, name)
	b.checkStoredV2(t, name, b.EtcdGet(t, testNS, name), newKey+"/v1/", newKey+":vault:v1:")

	n := b.rewriteAll(t)
	count, deks := b.scanAllV2(t, newKey+"/v1/", newKey+":vault:v1:")
	if count != n {
		t.Fatalf("rewrote %d Secrets, etcd holds %d", n, count)
	}
	t.Logf("rewrote %d Secrets: all under %s (%d distinct DEK ciphertexts), none under %s", n, newKey, len(deks), oldKey)
	b.checkNothingLost(t)
}
