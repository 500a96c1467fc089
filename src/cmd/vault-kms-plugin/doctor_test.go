package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

const goodEncryptionConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: vault
          endpoint: unix:///var/run/kmsplugin/socket.sock
          timeout: 3s
      - identity: {}
`

func runDoctorWith(t *testing.T, env map[string]string, encCfg string, flags ...string) (int, string) {
	t.Helper()
	for _, k := range []string{"VAULT_ADDR", "VAULT_TOKEN", "VAULT_KMS_KEY_NAMES", "VAULT_KMS_LISTEN", "VAULT_KMS_AUTH_METHOD", "VAULT_KMS_STATUS_GRACE"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	args := append([]string{"doctor"}, flags...)
	if encCfg != "" {
		f := filepath.Join(t.TempDir(), "enc.yaml")
		os.WriteFile(f, []byte(encCfg), 0o600)
		args = append(args, "-encryption-config", f)
	}
	var out bytes.Buffer
	code := run(args, &out, &out)
	return code, out.String()
}

// with returns env with k set to v.
func with(env map[string]string, k, v string) map[string]string {
	env[k] = v
	return env
}

func TestDoctor(t *testing.T) {
	v := testvault.Start(t, testvault.Options{Persistent: true})
	v.EnableTransit("transit", "kube", "deletable")
	v.Write("transit/keys/deletable/config", map[string]any{"deletion_allowed": true})
	v.Policy("good", testvault.KMSPolicy("transit", "kube"))
	v.Policy("no-decrypt", `path "transit/encrypt/kube" { capabilities = ["update"] }
path "transit/keys/kube" { capabilities = ["read"] }`)
	v.Policy("create", testvault.KMSPolicy("transit", "kube")+`path "transit/encrypt/*" { capabilities = ["create", "update"] }`)
	v.Policy("deletable", testvault.KMSPolicy("transit", "deletable"))
	v.Policy("missing", testvault.KMSPolicy("transit", "nosuchkey"))
	v.Write("transit/keys/derived", map[string]any{"derived": true})
	v.Write("transit/keys/exportable", map[string]any{"exportable": true, "allow_plaintext_backup": true})
	v.Write("transit/keys/rotating", map[string]any{"auto_rotate_period": "720h"})
	v.EnableTransit("strict", "kube")
	v.Write("strict/config/keys", map[string]any{"disable_upsert": true})
	v.Policy("derived", testvault.KMSPolicy("transit", "derived"))
	v.Policy("exportable", testvault.KMSPolicy("transit", "exportable"))
	v.Policy("rotating", testvault.KMSPolicy("transit", "rotating")+`path "transit/config/keys" { capabilities = ["read"] }`)
	v.Policy("strict", testvault.KMSPolicy("strict", "kube")+`path "strict/config/keys" { capabilities = ["read"] }`)
	token := func(policy string) string {
		return v.Token(&api.TokenCreateRequest{Policies: []string{policy}, TTL: "1h"})
	}
	env := func(policy, key string) map[string]string {
		return map[string]string{"VAULT_ADDR": v.Addr, "VAULT_TOKEN": token(policy), "VAULT_KMS_KEY_NAMES": key}
	}
	talosSocket := talosStyleSocket(t)

	for _, tc := range []struct {
		name   string
		env    map[string]string
		encCfg string
		code   int
		want   []string
	}{
		{"correct setup", env("good", "kube"), goodEncryptionConfig, 0,
			[]string{"PASS  vault reachable", "PASS  auth", "PASS  policy kube", "PASS  key kube", "PASS  round trip", "PASS  encryption config secrets"}},
		{"no status grace", with(env("good", "kube"), "VAULT_KMS_STATUS_GRACE", "0"), "", 0,
			[]string{"WARN  status grace", "VAULT_KMS_STATUS_GRACE=0", "fix: set VAULT_KMS_STATUS_GRACE", "/readyz?exclude=kms-providers or /livez", "PASS  round trip"}},
		{"default status grace", env("good", "kube"), "", 0,
			[]string{"PASS  status grace", "for 2m0s while Vault is unreachable", "/readyz?exclude=kms-providers or /livez"}},
		{"socket served as on Talos", with(env("good", "kube"), "VAULT_KMS_LISTEN", "unix://"+talosSocket), "", 0,
			[]string{"PASS  socket access", talosSocket + " is owned by uid 0, gid 65534, mode 0660"}},
		{"socket not served", with(env("good", "kube"), "VAULT_KMS_LISTEN", "unix://"+filepath.Join(filepath.Dir(talosSocket), "other.sock")), "", 0,
			[]string{"WARN  socket access", "other.sock: the plugin is not serving there", "fix: start the plugin"}},
		{"wrong address", map[string]string{"VAULT_ADDR": fmt.Sprintf("http://127.0.0.1:%d", testvault.FreePort(t)), "VAULT_TOKEN": "x", "VAULT_KMS_KEY_NAMES": "kube"}, "", 1,
			[]string{"FAIL  vault reachable", "connection refused", "fix: check VAULT_ADDR"}},
		{"missing key", env("missing", "nosuchkey"), "", 1,
			[]string{"FAIL  key nosuchkey", "fix: create it: vault write -f transit/keys/nosuchkey"}},
		{"policy without decrypt", env("no-decrypt", "kube"), "", 1,
			[]string{"FAIL  policy kube", "lacks update on transit/decrypt/kube", `path "transit/decrypt/kube"`}},
		{"policy with create on encrypt", env("create", "kube"), "", 0,
			[]string{"WARN  policy kube", "transit/encrypt/kube-mistyped (create: a mistyped key name would silently create a new key)"}},
		{"deletable key", env("deletable", "deletable"), "", 1,
			[]string{"FAIL  key deletable", "deletion_allowed is true", "deletion_allowed=false"}},
		{"encryption config v1", env("good", "kube"), strings.Replace(goodEncryptionConfig, "apiVersion: v2", "cachesize: 1000", 1), 1,
			[]string{"FAIL  encryption config secrets", "uses KMS v1", "set apiVersion: v2"}},
		{"encryption config wrong socket", env("good", "kube"), strings.Replace(goodEncryptionConfig, "kmsplugin/socket.sock", "kms/other.sock", 1), 1,
			[]string{"FAIL  encryption config", "no kms provider has endpoint unix:///var/run/kmsplugin/socket.sock"}},
		{"identity first", env("good", "kube"), strings.Replace(strings.Replace(goodEncryptionConfig, "      - identity: {}\n", "", 1), "    providers:\n", "    providers:\n      - identity: {}\n", 1), 1,
			[]string{"identity {} comes before the kms provider"}},
		{"derived key", env("derived", "derived"), "", 1,
			[]string{"FAIL  key derived material", "derived is true", "needs a context", "fix: create a key without derivation"}},
		{"exportable key", env("exportable", "exportable"), "", 0,
			[]string{"WARN  key exportable material", "exportable is true", "allow_plaintext_backup is true", "fix: restrict read on transit/export/ and transit/backup/"}},
		{"rotating key, upsert on", env("rotating", "rotating"), "", 0,
			[]string{"PASS  key rotating rotation", "auto_rotate_period is 720h0m0s", "WARN  transit upsert", "transit/config/keys has disable_upsert false", "fix: vault write transit/config/keys disable_upsert=true"}},
		{"no rotation, config/keys unreadable", env("good", "kube"), "", 0,
			[]string{"PASS  key kube material", "NOTE  key kube rotation", "auto_rotate_period is 0", "auto_rotate_period=2160h", "NOTE  transit upsert", "may not read transit/config/keys", "disable_upsert=true"}},
		{"upsert disabled", with(env("strict", "kube"), "VAULT_KMS_TRANSIT_PATH", "strict"), "", 0,
			[]string{"PASS  transit upsert", "strict/config/keys has disable_upsert true", "PASS  round trip"}},
		{"configmaps under kms, deployment unknown", env("good", "kube"), strings.Replace(goodEncryptionConfig, "[secrets]", "[secrets, configmaps]", 1), 0,
			[]string{"WARN  encryption config cold start", "cannot read any ConfigMap until this plugin runs", "if the plugin runs as a DaemonSet", `fix: list configmaps in an entry of its own before "configmaps"`, "staticPod.enabled=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runDoctorWith(t, tc.env, tc.encCfg)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("doctor said:\n%s", out)
			}
		})
	}

	t.Run("no apiserver under -proc", func(t *testing.T) {
		e := with(env("good", "kube"), "VAULT_KMS_LISTEN", "unix://"+talosSocket)
		code, out := runDoctorWith(t, e, "", "-proc", t.TempDir())
		if code != 0 || !strings.Contains(out, "PASS  socket access") || !strings.Contains(out, "no kube-apiserver process is visible") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})

	t.Run("sealed", func(t *testing.T) {
		e := env("good", "kube")
		v.Seal()
		defer v.Unseal()
		code, out := runDoctorWith(t, e, "")
		if code != 1 || !strings.Contains(out, "FAIL  vault unsealed") || !strings.Contains(out, "is sealed") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})

	t.Run("deployment", func(t *testing.T) {
		wildcard := strings.Replace(goodEncryptionConfig, "[secrets]", "['*.*']", 1)
		configMapsFirst := strings.Replace(goodEncryptionConfig, "resources:\n", "resources:\n  - resources: [configmaps]\n    providers: [identity: {}]\n", 1)
		for _, tc := range []struct {
			name, deployment, encCfg string
			code                     int
			want, unwanted           []string
		}{
			{"daemonset, *.* under kms", "daemonset", wildcard, 0,
				[]string{"WARN  encryption config cold start", "DaemonSet pod cannot start without its ConfigMap", `before "*.*"`}, nil},
			{"daemonset, core wildcard under kms", "daemonset", strings.Replace(goodEncryptionConfig, "[secrets]", "['*.']", 1), 0,
				[]string{"WARN  encryption config cold start", `before "*."`}, nil},
			{"static pod, *.* under kms", "static-pod", wildcard, 0,
				[]string{"PASS  encryption config cold start", "static pod"}, nil},
			{"daemonset, configmaps listed before under identity", "daemonset", strings.Replace(configMapsFirst, "[secrets]", "['*.*']", 1), 0,
				[]string{"PASS  encryption config *.*"}, []string{"cold start"}},
			{"daemonset, secrets only", "daemonset", goodEncryptionConfig, 0,
				[]string{"PASS  encryption config secrets"}, []string{"cold start"}},
			{"unknown deployment", "pod", goodEncryptionConfig, 2,
				[]string{`-deployment="pod" is not a way to run the plugin: use daemonset, static-pod`}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, out := runDoctorWith(t, env("good", "kube"), tc.encCfg, "-deployment", tc.deployment)
				if code != tc.code {
					t.Errorf("exit %d, want %d", code, tc.code)
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("output lacks %q", w)
					}
				}
				for _, u := range tc.unwanted {
					if strings.Contains(out, u) {
						t.Errorf("output has %q", u)
					}
				}
				if t.Failed() {
					t.Logf("doctor said:\n%s", out)
				}
			})
		}
	})
}

// talosStyleSocket listens on a real socket of group 65534 and mode 0660,
// in a directory everyone may search, as the chart sets it up for a
// kube-apiserver running as 65534. Root and 65534, the apiservers the tests
// on this machine run, can both connect.
func talosStyleSocket(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kmsplugin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "socket.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Lchown(path, -1, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		t.Fatal(err)
	}
	return path
}
