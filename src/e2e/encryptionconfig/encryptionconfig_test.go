// Package encryptionconfig_test loads EncryptionConfigurations with the
// apiserver's own loader and sends its envelope encryption through the
// plugin binary to a real Vault.
package encryptionconfig_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/readme"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

var secrets = schema.GroupResource{Resource: "secrets"}

func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vault-kms-plugin")
	// Built in the product's own module, with its own go.sum.
	out, err := exec.Command("go", "build", "-C", "../../..", "-o", bin, "./src/cmd/vault-kms-plugin").CombinedOutput()
	if err != nil {
		t.Fatalf("build plugin: %v\n%s", err, out)
	}
	return bin
}

// startPlugin runs the plugin binary against v and returns its socket.
func startPlugin(t *testing.T, bin string, v *testvault.Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "kmsplugin", "socket.sock")
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + v.RootToken,
		"VAULT_KMS_KEY_NAMES=kube", "VAULT_KMS_TRANSIT_PATH=/transit",
		"VAULT_KMS_LISTEN=unix://" + sock, "VAULT_KMS_KEY_REFRESH_INTERVAL=1s",
		"VAULT_KMS_HEALTH_ADDR=",
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("plugin log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := exec.Command(bin, "probe", "-endpoint", "unix://"+sock, "-timeout", "1s").CombinedOutput(); err == nil {
			return sock
		} else if time.Now().Add(time.Second).After(deadline) {
			t.Fatalf("plugin not healthy: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return sock
}

// load loads the README's EncryptionConfiguration (v2, or v1 by the
// README's recipe) with the apiserver's own loader, pointed at sock.
func load(t *testing.T, v1 bool, sock string) *encryptionconfig.EncryptionConfiguration {
	t.Helper()
	yaml, err := readme.EncryptionConfig()
	if err == nil && v1 {
		yaml, err = readme.V1Of(yaml)
	}
	if err == nil {
		yaml, err = readme.WithSocket(yaml, sock)
	}
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "encryption-config.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg, err := encryptionconfig.LoadEncryptionConfig(ctx, f, false, "test-apiserver")
	if err != nil {
		t.Fatalf("load encryption config: %v", err)
	}
	return cfg
}

// setup starts a Vault and the plugin binary and loads the README's
// configuration; it returns the Secrets transformer the apiserver would use.
func setup(t *testing.T, v1 bool) (*testvault.Server, *encryptionconfig.EncryptionConfiguration, value.Transformer) {
	t.Helper()
	bin := buildPlugin(t)
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	cfg := load(t, v1, startPlugin(t, bin, v))
	healthy(t, cfg)
	return v, cfg, cfg.Transformers[secrets]
}

func healthy(t *testing.T, cfg *encryptionconfig.EncryptionConfiguration) {
	t.Helper()
	for _, h := range cfg.HealthChecks {
		if err := h.Check(httptest.NewRequest("GET", "/healthz", nil)); err != nil {
			t.Fatalf("%s: %v", h.Name(), err)
		}
	}
}

func TestKMSv2ThroughTheApiserversLoader(t *testing.T) {
	v, cfg, tr := setup(t, false)
	ctx := context.Background()
	dataCtx := value.DefaultContext("/registry/secrets/default/s1")
	plain := []byte(`{"kind":"Secret","data":{"password":"hunter2"}}`)
	stored, err := tr.TransformToStorage(ctx, plain, dataCtx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(stored, []byte("k8s:enc:kms:v2:vault:")) || bytes.Contains(stored, []byte("hunter2")) {
		t.Fatalf("stored %q", stored)
	}
	got, stale, err := tr.TransformFromStorage(ctx, stored, dataCtx)
	if err != nil || stale || !bytes.Equal(got, plain) {
		t.Fatalf("read back %q stale=%v err=%v", got, stale, err)
	}

	// Rotate in Vault; the plugin's refresh picks it up within a second,
	// and the apiserver's next health check (its positive result is
	// cached for 20s) rotates the DEK.
	v.Rotate("transit", "kube")
	time.Sleep(21 * time.Second)
	healthy(t, cfg)
	stored2, err := tr.TransformToStorage(ctx, plain, dataCtx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(stored[:60], stored2[:60]) {
		t.Fatal("no new DEK after the key rotated")
	}
	if !bytes.Contains(stored2, []byte("kube/v2/")) || bytes.Contains(stored2, []byte("kube/v1/")) {
		t.Fatalf("new writes do not carry the v2 key id: %q", stored2)
	}
	// Old data still reads, reported stale so that a storage migration rewrites it.
	got, stale, err = tr.TransformFromStorage(ctx, stored, dataCtx)
	if err != nil || !stale || !bytes.Equal(got, plain) {
		t.Fatalf("old data after rotation: %q stale=%v err=%v", got, stale, err)
	}
	got, stale, err = tr.TransformFromStorage(ctx, stored2, dataCtx)
	if err != nil || stale || !bytes.Equal(got, plain) {
		t.Fatalf("new data: %q stale=%v err=%v", got, stale, err)
	}
}

func TestKMSv1ThroughTheApiserversLoader(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.KMSv1, true)
	_, _, tr := setup(t, true)
	ctx := context.Background()
	dataCtx := value.DefaultContext("/registry/secrets/default/s1")
	plain := []byte("v1 secret payload")
	stored, err := tr.TransformToStorage(ctx, plain, dataCtx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(stored), "k8s:enc:kms:v1:vault:") || bytes.Contains(stored, plain) {
		t.Fatalf("stored %q", stored)
	}
	got, _, err := tr.TransformFromStorage(ctx, stored, dataCtx)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("read back %q %v", got, err)
	}
}
