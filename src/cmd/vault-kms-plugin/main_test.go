package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

var pluginBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vkp-bin")
	if err != nil {
		panic(err)
	}
	pluginBin = filepath.Join(dir, "vault-kms-plugin")
	out, err := exec.Command("go", "build", "-race", "-o", pluginBin, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd  *exec.Cmd
	logs *testvault.Buffer
	done chan struct{}
	err  error
}

// startPlugin runs the plugin binary with exactly env.
func startPlugin(t *testing.T, env map[string]string) *proc {
	t.Helper()
	return startPluginBin(t, pluginBin, env)
}

// startPluginBin runs bin, a build of the plugin, with exactly env.
func startPluginBin(t *testing.T, bin string, env map[string]string) *proc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{cmd: cmd, logs: &testvault.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("plugin log:\n%s", p.logs.String())
		}
	})
	return p
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("plugin did not exit")
	}
	return p.cmd.ProcessState.ExitCode()
}

func waitHealthy(t *testing.T, sock string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run([]string{"probe", "-endpoint", "unix://" + sock, "-wait", "20s", "-timeout", "2s"}, &out, &errb); code != 0 {
		t.Fatalf("plugin not healthy: %s %s", out.String(), errb.String())
	}
}

func pluginEnv(v *testvault.Server, sock string, extra map[string]string) map[string]string {
	env := map[string]string{
		"VAULT_ADDR":            v.Addr,
		"VAULT_TOKEN":           v.RootToken,
		"VAULT_KMS_KEY_NAMES":   "kube",
		"VAULT_KMS_LISTEN":      "unix://" + sock,
		"VAULT_KMS_HEALTH_ADDR": "",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func dial(t *testing.T, sock string) kmsapi.KeyManagementServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kmsapi.NewKeyManagementServiceClient(conn)
}

func TestBadConfigurationStopsStartupNamingTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"VAULT_ADDR": "http://127.0.0.1:1"}, "VAULT_KMS_KEY_NAMES is required"},
		{map[string]string{"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t", "VAULT_KMS_KEY_NAMES": "k", "VAULT_KMS_VAULT_TIMEOUT": "soon"}, "VAULT_KMS_VAULT_TIMEOUT"},
		{map[string]string{"VAULT_TOKEN": "t", "VAULT_KMS_KEY_NAMES": "k"}, "VAULT_ADDR is not set"},
		{map[string]string{"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t", "VAULT_KMS_KEY_NAMES": "k", "VAULT_KMS_TRANSIT_MOUNT": "transit"}, "VAULT_KMS_TRANSIT_MOUNT is not a setting of this plugin: did you mean VAULT_KMS_TRANSIT_PATH?"},
		{map[string]string{"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t", "VAULT_KMS_KEY_NAMES": "k", "VAULT_AGENT_ADDR": "http://127.0.0.1:2"}, "VAULT_AGENT_ADDR"},
		{map[string]string{"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t", "VAULT_KMS_KEY_NAMES": "k", "VAULT_KMS_LISTEN": "unix:///@kms"}, "is an abstract socket"},
	} {
		p := startPlugin(t, tc.env)
		if code := p.wait(t); code != 2 || !strings.Contains(p.logs.String(), tc.want) {
			t.Errorf("exit %d, output %q; want 2 and %q", code, p.logs.String(), tc.want)
		}
	}
}

// TestIgnoredSettingIsLogged: a setting the auth method does not read is
// logged as a warning naming it, and the plugin serves.
func TestIgnoredSettingIsLogged(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	sock := filepath.Join(t.TempDir(), "kms.sock")
	p := startPlugin(t, pluginEnv(v, sock, map[string]string{"VAULT_KMS_APPROLE_ROLE_ID": "some-role"}))
	waitHealthy(t, sock)
	if want := "VAULT_KMS_APPROLE_ROLE_ID is set but VAULT_KMS_AUTH_METHOD=token does not read it"; !strings.Contains(p.logs.String(), want) {
		t.Fatalf("log %q does not warn %q", p.logs.String(), want)
	}
}

func TestServeRejectsArguments(t *testing.T) {
	var errb bytes.Buffer
	if code := run([]string{"serve", "--log-level=debug"}, io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), "settings come from the environment") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--help"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, n := range config.VarNames() {
		if !strings.Contains(out.String(), n) {
			t.Errorf("--help lacks %s", n)
		}
	}
}

func TestSocketLifecycle(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	sock := filepath.Join(t.TempDir(), "run", "kmsplugin", "socket.sock")
	env := pluginEnv(v, sock, nil)

	first := startPlugin(t, env)
	waitHealthy(t, sock)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v mode %v", err, fi.Mode())
	}

	// A second plugin must not steal a live socket.
	second := startPlugin(t, env)
	if code := second.wait(t); code != 1 || !strings.Contains(second.logs.String(), "another process is serving") {
		t.Fatalf("second plugin: exit %d, %s", code, second.logs.String())
	}

	// A killed plugin leaves its socket behind; the next one replaces it.
	_ = first.cmd.Process.Signal(syscall.SIGKILL)
	first.wait(t)
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("SIGKILL should leave the socket behind: %v", err)
	}
	third := startPlugin(t, env)
	waitHealthy(t, sock)

	// SIGTERM shuts down cleanly and removes the socket.
	_ = third.cmd.Process.Signal(syscall.SIGTERM)
	if code := third.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket still there after SIGTERM: %v", err)
	}
}

func TestRefusesToReplaceAFile(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "socket.sock")
	os.WriteFile(sock, []byte("not a socket"), 0o600)
	p := startPlugin(t, map[string]string{"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t", "VAULT_KMS_KEY_NAMES": "k", "VAULT_KMS_LISTEN": "unix://" + sock})
	if code := p.wait(t); code != 1 || !strings.Contains(p.logs.String(), "is not a socket") {
		t.Fatalf("exit %d: %s", code, p.logs.String())
	}
	if b, _ := os.ReadFile(sock); string(b) != "not a socket" {
		t.Fatal("the file was touched")
	}
}

// TestLogsNeverHoldSecrets runs the plugin at debug level through logins,
// calls, failures and an outage, then looks for every secret in its output.
func TestLogsNeverHoldSecrets(t *testing.T) {
	v := testvault.Start(t, testvault.Options{Persistent: true})
	v.EnableTransit("transit", "kube")
	v.Policy("kms", testvault.KMSPolicy("transit", "kube"))
	cl := v.Client()
	if err := cl.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	v.Write("auth/approle/role/kms", map[string]any{"token_policies": "kms", "token_ttl": "3s", "token_max_ttl": "6s"})
	rid, err := cl.Logical().Read("auth/approle/role/kms/role-id")
	if err != nil {
		t.Fatal(err)
	}
	secretID := v.Write("auth/approle/role/kms/secret-id", nil).Data["secret_id"].(string)
	dir := t.TempDir()
	sidFile := filepath.Join(dir, "secret-id")
	os.WriteFile(sidFile, []byte(secretID), 0o600)
	staticToken := v.Token(&api.TokenCreateRequest{Policies: []string{"kms"}, TTL: "1h"})
	issuer := testvault.NewJWTIssuer(t)
	v.EnableJWTAuth("jwt", issuer, "kms", "vault-kms", "kms")
	jwt := issuer.Sign(t, "system:serviceaccount:kube-system:vault-kms-plugin", "vault-kms", time.Now().Add(time.Hour))
	jwtFile := filepath.Join(dir, "jwt")
	os.WriteFile(jwtFile, []byte(jwt), 0o600)

	plaintext := "TOP-SECRET-DEK-0123456789abcdef!"
	secrets := []string{secretID, staticToken, v.RootToken, jwt, plaintext, base64.StdEncoding.EncodeToString([]byte(plaintext))}

	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"approle", map[string]string{"VAULT_TOKEN": "", "VAULT_KMS_AUTH_METHOD": "approle", "VAULT_KMS_APPROLE_ROLE_ID": rid.Data["role_id"].(string), "VAULT_KMS_APPROLE_SECRET_ID_FILE": sidFile}},
		{"token", map[string]string{"VAULT_TOKEN": staticToken}},
		{"jwt", map[string]string{"VAULT_TOKEN": "", "VAULT_KMS_AUTH_METHOD": "jwt", "VAULT_KMS_AUTH_ROLE": "kms", "VAULT_KMS_SA_TOKEN_FILE": jwtFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "kms.sock")
			env := pluginEnv(v, sock, tc.env)
			env["VAULT_KMS_LOG_LEVEL"] = "debug"
			env["VAULT_KMS_KEY_REFRESH_INTERVAL"] = "1s"
			p := startPlugin(t, env)
			waitHealthy(t, sock)
			c := dial(t, sock)
			ctx := context.Background()
			res, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: []byte(plaintext), Uid: "u1"})
			if err != nil {
				t.Fatal(err)
			}
			if out, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: res.Ciphertext, KeyId: res.KeyId}); err != nil || string(out.Plaintext) != plaintext {
				t.Fatalf("decrypt %v", err)
			}
			// Failures are logged too: a tampered ciphertext and an outage.
			bad := append([]byte(nil), res.Ciphertext...)
			bad[len(bad)-3] ^= 1
			c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: bad})
			v.Stop()
			c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: res.Ciphertext})
			time.Sleep(2 * time.Second) // failed refreshes and renewals
			v.Start()
			waitHealthy(t, sock)
			time.Sleep(4 * time.Second) // logins again after max_ttl
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			p.wait(t)

			logs := p.logs.String()
			if !strings.Contains(logs, `"level":"DEBUG"`) || !strings.Contains(logs, "kms call failed") {
				t.Fatalf("debug logs missing; the scan would prove nothing:\n%s", logs)
			}
			transitCT := string(res.Ciphertext[strings.Index(string(res.Ciphertext), ":")+1:])
			for _, s := range append(secrets, string(res.Ciphertext), transitCT, string(bad)) {
				if strings.Contains(logs, s) {
					t.Errorf("log holds a secret (%d bytes starting %.4q)", len(s), s)
				}
			}
		})
	}
}
