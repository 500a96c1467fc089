package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/readme"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// The README's names, and the Secret the demo writes. The password is the
// demo's own, shown on purpose: the point is to see it come back.
const (
	keyName    = "kube-secrets"
	policyName = "vault-kms-plugin"
	secretName = "demo"
	password   = "hunter2-demo"
	v2Prefix   = "k8s:enc:kms:v2:vault:" // what the apiserver writes for provider "vault"

	maxSocketPath = 107 // sun_path's 108 bytes, the last a NUL
)

type demo struct {
	h        *harness.Program
	out      io.Writer
	errOut   io.Writer         // the demo's own messages: failures, logs
	bedNotes *testvault.Buffer // what the bed logged (Vault's log on failure)
	// interrupted is set by Ctrl-C: the failures that follow, of servers
	// stopped under a running step, are not worth their logs.
	interrupted *atomic.Bool
	pluginBin   string
	keep        bool // DEMO_KEEP=1: leave everything running until Ctrl-C
	color       bool
	bed         *bed.Bed
}

func (d *demo) step(title string) {
	if d.color {
		fmt.Fprintf(d.out, "\n\033[1m== %s\033[0m\n", title)
		return
	}
	fmt.Fprintf(d.out, "\n== %s\n", title)
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) run() error {
	d.bed = bed.New(d.h, d.h.TempDir())
	d.bed.PluginBin = d.pluginBin
	// Registered before any server starts, so it runs after they have all
	// stopped and before the work directory goes.
	d.h.Cleanup(d.showLogsOnFailure)

	// Checked before anything starts: the plugin could not listen there.
	socket := filepath.Join(d.bed.Dir, "kmsplugin", "socket.sock")
	if len(socket) > maxSocketPath {
		d.h.Fatalf("the plugin's socket %s is %d bytes long, more than a unix socket's %d: set TMPDIR to a shorter directory", socket, len(socket), maxSocketPath)
	}
	token := d.startVault()
	d.startPlugin(token, socket)
	d.startControlPlane(socket)
	d.createSecret()
	d.showStored()
	d.readBack()

	d.say("\nDemo passed: the Secret is encrypted at rest by Vault transit and decrypted on read.")
	if d.keep {
		d.say("\nDEMO_KEEP=1: everything stays up until Ctrl-C. Try:\n  %s --kubeconfig %s get secret %s -o yaml",
			d.bed.KubectlBin, d.bed.Kubeconfig, secretName)
		select {} // Ctrl-C's handler stops everything and exits
	}
	return nil
}

// startVault starts a Vault dev server with transit, the key and the
// plugin's policy, and returns a token limited to that policy.
func (d *demo) startVault() string {
	d.step("Start a Vault dev server on 127.0.0.1 with transit and a key")
	v := d.bed.StartVault(testvault.Options{}, keyName, policyName)
	token := v.Token(&api.TokenCreateRequest{Policies: []string{policyName}, Period: "1h"})
	d.say("Vault at %s: transit key %s created; the plugin gets a token limited to encrypt, decrypt and read on it", v.Addr, keyName)
	return token
}

// startPlugin starts the plugin with token on socket and waits until it
// is ready (logged in, key read).
func (d *demo) startPlugin(token, socket string) {
	d.step("Start the plugin")
	b := d.bed
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		d.h.Fatal(err)
	}
	health := fmt.Sprintf("127.0.0.1:%d", testvault.FreePort(d.h))
	env := []string{
		"VAULT_ADDR=" + b.Vault.Addr,
		"VAULT_TOKEN=" + token,
		"VAULT_KMS_KEY_NAMES=" + keyName,
		"VAULT_KMS_LISTEN=unix://" + socket,
		"VAULT_KMS_HEALTH_ADDR=" + health,
		"VAULT_KMS_LOG_FORMAT=text",
	}
	b.StartPlugin(d.h, []string{b.PluginBin, "serve"}, env, "http://"+health+"/livez")
	bed.WaitFor(d.h, 30*time.Second, "plugin /readyz", func() error {
		code, body, err := bed.HTTPGet("http://" + health + "/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%d %s", code, strings.TrimSpace(body))
		}
		return nil
	})
	d.say("plugin ready on unix://%s (logged in to Vault, key %s read)", socket, keyName)
}

// startControlPlane starts etcd, then kube-apiserver with the README's
// EncryptionConfiguration pointed at socket.
func (d *demo) startControlPlane(socket string) {
	d.step("Start etcd and kube-apiserver with the plugin as KMS v2 provider for Secrets")
	b := d.bed
	cfg, err := readme.EncryptionConfig()
	if err != nil {
		d.h.Fatal(err)
	}
	if cfg, err = readme.WithSocket(cfg, socket); err != nil {
		d.h.Fatal(err)
	}
	d.say("The README's EncryptionConfiguration, its endpoint at the demo's socket:\n%s", strings.TrimRight(cfg, "\n"))
	file := bed.WriteFile(d.h, filepath.Join(b.Dir, "encryption-config.yaml"), cfg)
	b.StartEtcd(d.h)
	took := b.StartAPIServer(d.h, file)
	d.say("kube-apiserver ready on https://127.0.0.1:%d after %s (etcd on 127.0.0.1:%d)", b.APIServerPort, took.Round(100*time.Millisecond), b.EtcdPort)
}

func (d *demo) createSecret() {
	args := []string{"create", "secret", "generic", secretName, "--from-literal=password=" + password}
	d.step("kubectl " + strings.Join(args, " "))
	out, err := d.bed.Kubectl(args...)
	if err != nil {
		d.h.Fatalf("kubectl create secret: %v\n%s", err, out)
	}
	d.say("%s", strings.TrimSpace(out))
}

// showStored reads the Secret's value straight from etcd: KMS v2
// ciphertext, and no password in it.
func (d *demo) showStored() {
	key := "/registry/secrets/default/" + secretName
	d.step("What etcd stores under " + key)
	raw := d.bed.EtcdGet(d.h, "default", secretName)
	d.say("%s...", printable(raw, 160))
	if !bytes.HasPrefix(raw, []byte(v2Prefix)) {
		d.h.Fatalf("the etcd value of %s is not KMS v2 ciphertext: it does not start with %s", key, v2Prefix)
	}
	if bytes.Contains(raw, []byte(password)) {
		d.h.Fatalf("the etcd value of %s holds the password in clear", key)
	}
	d.say("-> encrypted: prefix %s, and no %q in it", v2Prefix, password)
}

// readBack reads the Secret through the API: the apiserver decrypts it
// through the plugin.
func (d *demo) readBack() {
	d.step("kubectl get secret " + secretName + " (decrypted by the apiserver through the plugin)")
	out, err := d.bed.Kubectl("get", "secret", secretName, "-o", "jsonpath={.data.password}")
	if err != nil {
		d.h.Fatalf("kubectl get secret: %v\n%s", err, out)
	}
	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		d.h.Fatalf("kubectl get secret printed %q, not base64: %v", out, err)
	}
	d.say("password=%s", got)
	if string(got) != password {
		d.h.Fatalf("read back %q, want %q", got, password)
	}
}

// printable is the first n bytes of b with every byte that is not
// printable ASCII shown as '.'.
func printable(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}
