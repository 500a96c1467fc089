package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

// setEnv clears every variable the plugin reads, then sets env.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, n := range VarNames() {
		t.Setenv(n, "")
		os.Unsetenv(n)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func base(extra map[string]string) map[string]string {
	m := map[string]string{
		"VAULT_ADDR":          "https://vault.example.com:8200",
		"VAULT_TOKEN":         "s.xyz",
		"VAULT_KMS_KEY_NAMES": "kube",
	}
	for k, v := range extra {
		if v == "-" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func TestLoadDefaults(t *testing.T) {
	setEnv(t, base(nil))
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.TransitPath != "transit" || c.AuthMethod != "token" || c.AuthMount != "token" ||
		c.SocketPath() != "/var/run/kmsplugin/socket.sock" || c.SocketFileMode() != 0o600 ||
		c.VaultTimeout != 2*time.Second || !c.GroupCommit || c.BatchMaxItems != 250 || c.MaxInflight != 512 || c.HealthAddr != "127.0.0.1:8787" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestListenEndpointIsWhatServeListensOn(t *testing.T) {
	for _, listen := range []string{"", "unix:///run/kms/other.sock"} {
		env := base(nil)
		if listen != "" {
			env["VAULT_KMS_LISTEN"] = listen
		}
		setEnv(t, env)
		c, err := Load()
		if err != nil {
			t.Fatal(err)
		}
		if got := ListenEndpoint(); got != c.Listen || got == "" {
			t.Errorf("VAULT_KMS_LISTEN=%q: ListenEndpoint() = %q, serve listens on %q", listen, got, c.Listen)
		}
	}
}

func TestLoadNormalises(t *testing.T) {
	setEnv(t, base(map[string]string{
		"VAULT_KMS_KEY_NAMES":    " new , old ",
		"VAULT_KMS_TRANSIT_PATH": "/transit/",
		"VAULT_KMS_AUTH_METHOD":  "kubernetes",
		"VAULT_KMS_AUTH_ROLE":    "kms",
		"VAULT_KMS_AUTH_MOUNT":   "/k8s-prod/",
	}))
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.KeyNames, "|") != "new|old" || c.TransitPath != "transit" || c.AuthMount != "k8s-prod" {
		t.Fatalf("got %+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no keys", map[string]string{"VAULT_KMS_KEY_NAMES": "-"}, "VAULT_KMS_KEY_NAMES is required"},
		{"bad key", map[string]string{"VAULT_KMS_KEY_NAMES": "a:b"}, `VAULT_KMS_KEY_NAMES: "a:b" is not a transit key name`},
		{"dup key", map[string]string{"VAULT_KMS_KEY_NAMES": "a,a"}, `"a" is listed twice`},
		{"no addr", map[string]string{"VAULT_ADDR": "-"}, "VAULT_ADDR is not set"},
		{"bad addr", map[string]string{"VAULT_ADDR": "vault:8200"}, "is not an http(s) URL"},
		{"bad path", map[string]string{"VAULT_KMS_TRANSIT_PATH": "a/../b"}, "VAULT_KMS_TRANSIT_PATH"},
		{"empty path", map[string]string{"VAULT_KMS_TRANSIT_PATH": "/"}, "VAULT_KMS_TRANSIT_PATH"},
		{"tcp listen", map[string]string{"VAULT_KMS_LISTEN": "tcp://127.0.0.1:80"}, "VAULT_KMS_LISTEN"},
		{"bare path listen", map[string]string{"VAULT_KMS_LISTEN": "/tmp/x.sock"}, "VAULT_KMS_LISTEN"},
		{"bad mode", map[string]string{"VAULT_KMS_SOCKET_MODE": "rw"}, "VAULT_KMS_SOCKET_MODE"},
		{"bad duration", map[string]string{"VAULT_KMS_VAULT_TIMEOUT": "2"}, "VAULT_KMS_VAULT_TIMEOUT=\"2\" is not valid: write a duration"},
		{"negative duration", map[string]string{"VAULT_KMS_KEY_REFRESH_INTERVAL": "-1s"}, "VAULT_KMS_KEY_REFRESH_INTERVAL=-1s must be positive"},
		{"negative grace", map[string]string{"VAULT_KMS_STATUS_GRACE": "-30s"}, "VAULT_KMS_STATUS_GRACE=-30s must not be negative: use 0 to fail Status"},
		{"bad grace", map[string]string{"VAULT_KMS_STATUS_GRACE": "2 minutes"}, "VAULT_KMS_STATUS_GRACE=\"2 minutes\" is not valid: write a duration"},
		{"bad bool", map[string]string{"VAULT_KMS_GROUP_COMMIT": "yes please"}, "VAULT_KMS_GROUP_COMMIT"},
		{"batch not a number", map[string]string{"VAULT_KMS_BATCH_MAX_ITEMS": "many"}, `VAULT_KMS_BATCH_MAX_ITEMS="many" is not valid: write a whole number`},
		{"batch zero", map[string]string{"VAULT_KMS_BATCH_MAX_ITEMS": "0"}, "VAULT_KMS_BATCH_MAX_ITEMS=0 is out of range: use 1 to 10000"},
		{"batch too large", map[string]string{"VAULT_KMS_BATCH_MAX_ITEMS": "10001"}, "VAULT_KMS_BATCH_MAX_ITEMS=10001 is out of range"},
		{"inflight zero", map[string]string{"VAULT_KMS_MAX_INFLIGHT": "0"}, "VAULT_KMS_MAX_INFLIGHT=0 is out of range: use 1 to 1048576"},
		{"inflight negative", map[string]string{"VAULT_KMS_MAX_INFLIGHT": "-5"}, "VAULT_KMS_MAX_INFLIGHT=-5 is out of range"},
		{"inflight too large", map[string]string{"VAULT_KMS_MAX_INFLIGHT": "1048577"}, "VAULT_KMS_MAX_INFLIGHT=1048577 is out of range"},
		{"inflight not a number", map[string]string{"VAULT_KMS_MAX_INFLIGHT": "lots"}, `VAULT_KMS_MAX_INFLIGHT="lots" is not valid: write a whole number`},
		{"bad method", map[string]string{"VAULT_KMS_AUTH_METHOD": "ldap"}, `VAULT_KMS_AUTH_METHOD="ldap" is not supported`},
		{"no token", map[string]string{"VAULT_TOKEN": "-"}, "needs a token"},
		{"two tokens", map[string]string{"VAULT_KMS_TOKEN_FILE": "/t"}, "keep only one"},
		{"k8s no role", map[string]string{"VAULT_KMS_AUTH_METHOD": "kubernetes"}, "needs VAULT_KMS_AUTH_ROLE"},
		{"jwt no role", map[string]string{"VAULT_KMS_AUTH_METHOD": "jwt"}, "VAULT_KMS_AUTH_METHOD=jwt needs VAULT_KMS_AUTH_ROLE: set it to the role on Vault's jwt auth mount"},
		{"jwt no file", map[string]string{"VAULT_KMS_AUTH_METHOD": "jwt", "VAULT_KMS_AUTH_ROLE": "kms", "VAULT_KMS_SA_TOKEN_FILE": ""}, "VAULT_KMS_AUTH_METHOD=jwt needs VAULT_KMS_SA_TOKEN_FILE"},
		{"approle no id", map[string]string{"VAULT_KMS_AUTH_METHOD": "approle", "VAULT_KMS_APPROLE_SECRET_ID_FILE": "/s"}, "needs VAULT_KMS_APPROLE_ROLE_ID"},
		{"approle no file", map[string]string{"VAULT_KMS_AUTH_METHOD": "approle", "VAULT_KMS_APPROLE_ROLE_ID": "r"}, "needs VAULT_KMS_APPROLE_SECRET_ID_FILE"},
		{"cert no cert", map[string]string{"VAULT_KMS_AUTH_METHOD": "cert"}, "needs VAULT_CLIENT_CERT"},
		{"bad level", map[string]string{"VAULT_KMS_LOG_LEVEL": "loud"}, "VAULT_KMS_LOG_LEVEL"},
		{"bad format", map[string]string{"VAULT_KMS_LOG_FORMAT": "xml"}, "VAULT_KMS_LOG_FORMAT"},
		{"unknown setting", map[string]string{"VAULT_KMS_KEY_NAME": "kube"}, "VAULT_KMS_KEY_NAME is not a setting of this plugin: did you mean VAULT_KMS_KEY_NAMES?"},
		{"unknown setting, empty", map[string]string{"VAULT_KMS_SOCKET_MOD": ""}, "did you mean VAULT_KMS_SOCKET_MODE?"},
		{"vault agent addr", map[string]string{"VAULT_AGENT_ADDR": "http://127.0.0.1:8100"}, `VAULT_AGENT_ADDR="http://127.0.0.1:8100" is set: the Vault client would send every request there`},
		{"unix vault addr", map[string]string{"VAULT_ADDR": "unix:///run/vault-agent.sock"}, "is a unix socket, which the plugin does not support"},
		{"refresh below floor", map[string]string{"VAULT_KMS_KEY_REFRESH_INTERVAL": "100ms"}, "VAULT_KMS_KEY_REFRESH_INTERVAL=100ms is below the floor of 1s"},
		{"abstract socket", map[string]string{"VAULT_KMS_LISTEN": "unix:///@kms"}, `VAULT_KMS_LISTEN="unix:///@kms" is an abstract socket`},
		{"relative socket", map[string]string{"VAULT_KMS_LISTEN": "unix://kms.sock"}, "VAULT_KMS_LISTEN"},
		{"socket in /run", map[string]string{"VAULT_KMS_LISTEN": "unix:///run/kms.sock"}, "VAULT_KMS_LISTEN: the directory /run is shared"},
		{"group not numeric", map[string]string{"VAULT_KMS_SOCKET_GROUP": "kube", "VAULT_KMS_SOCKET_MODE": "0660"}, `VAULT_KMS_SOCKET_GROUP="kube" is not a numeric group id`},
		{"group negative", map[string]string{"VAULT_KMS_SOCKET_GROUP": "-1", "VAULT_KMS_SOCKET_MODE": "0660"}, "is not a numeric group id"},
		{"group without access", map[string]string{"VAULT_KMS_SOCKET_GROUP": "65534"}, "VAULT_KMS_SOCKET_GROUP=65534 gets no access with VAULT_KMS_SOCKET_MODE=0600"},
		{"token file in /run", map[string]string{"VAULT_TOKEN": "-", "VAULT_KMS_TOKEN_FILE": "/run/vault-token"}, "VAULT_KMS_TOKEN_FILE: the directory /run is shared"},
		{"secret-id in kubelet pki", map[string]string{"VAULT_KMS_AUTH_METHOD": "approle", "VAULT_TOKEN": "-", "VAULT_KMS_APPROLE_ROLE_ID": "r", "VAULT_KMS_APPROLE_SECRET_ID_FILE": "/var/lib/kubelet/pki/secret-id"}, "VAULT_KMS_APPROLE_SECRET_ID_FILE: the directory /var/lib/kubelet/pki is shared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, base(tc.env))
			_, err := Load()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestStatusGrace(t *testing.T) {
	for _, tc := range []struct {
		set  string // "": unset
		want time.Duration
	}{
		{"", 2 * time.Minute},
		{"0", 0},
		{"45s", 45 * time.Second},
	} {
		env := map[string]string{}
		if tc.set != "" {
			env["VAULT_KMS_STATUS_GRACE"] = tc.set
		}
		setEnv(t, base(env))
		c, err := Load()
		if err != nil || c.StatusGrace != tc.want {
			t.Errorf("VAULT_KMS_STATUS_GRACE=%q: %v, %v; want %v", tc.set, c.StatusGrace, err, tc.want)
		}
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	var b strings.Builder
	if err := Usage(&b); err != nil {
		t.Fatal(err)
	}
	for _, n := range VarNames() {
		if !strings.Contains(b.String(), n) {
			t.Errorf("--help does not mention %s", n)
		}
	}
}

// TestSharedDirectories: every directory of SharedHostDirs and
// SharedHostTrees (and one below each tree) is refused as a token file's
// directory, and a dedicated directory is accepted.
func TestSharedDirectories(t *testing.T) {
	dirs := append([]string{}, SharedHostDirs...)
	for _, tree := range SharedHostTrees {
		dirs = append(dirs, tree, tree+"/sub")
	}
	dirs = append(dirs, "/var/run/", "/etc//kubernetes")
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			setEnv(t, base(map[string]string{"VAULT_TOKEN": "-", "VAULT_KMS_TOKEN_FILE": strings.TrimSuffix(dir, "/") + "/token"}))
			_, err := Load()
			if err == nil || !strings.Contains(err.Error(), "VAULT_KMS_TOKEN_FILE: the directory") || !strings.Contains(err.Error(), "put the file in a directory of its own") {
				t.Fatalf("error %v; want the refusal of %s", err, dir)
			}
		})
	}
	for _, dir := range []string{"/var/lib/vault-kms-plugin", "/etc/vault-kms-plugin", "/run/vault-agent", "/etc/kubernetes/kms", "/var/lib/kubeletx"} {
		t.Run("accepted "+dir, func(t *testing.T) {
			setEnv(t, base(map[string]string{"VAULT_TOKEN": "-", "VAULT_KMS_TOKEN_FILE": dir + "/token"}))
			if _, err := Load(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSettingsOfAnotherMethodWarn: a variable only another auth method
// reads is loaded with a warning naming it; the chosen method's own are
// not.
func TestSettingsOfAnotherMethodWarn(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"token alone", nil, nil},
		{"role with token", map[string]string{"VAULT_KMS_AUTH_ROLE": "kms"}, []string{"VAULT_KMS_AUTH_ROLE is set but VAULT_KMS_AUTH_METHOD=token does not read it"}},
		{"approle id with token", map[string]string{"VAULT_KMS_APPROLE_ROLE_ID": "r"}, []string{"VAULT_KMS_APPROLE_ROLE_ID is set but VAULT_KMS_AUTH_METHOD=token does not read it: remove it, or set VAULT_KMS_AUTH_METHOD=approle"}},
		{"kubernetes with a token", map[string]string{"VAULT_KMS_AUTH_METHOD": "kubernetes", "VAULT_KMS_AUTH_ROLE": "kms", "VAULT_KMS_TOKEN_FILE": "/var/lib/vkp/token"},
			[]string{"VAULT_KMS_TOKEN_FILE is set but VAULT_KMS_AUTH_METHOD=kubernetes", "VAULT_TOKEN is set but VAULT_KMS_AUTH_METHOD=kubernetes"}},
		{"cert with role", map[string]string{"VAULT_KMS_AUTH_METHOD": "cert", "VAULT_TOKEN": "-", "VAULT_CLIENT_CERT": "/c", "VAULT_CLIENT_KEY": "/k", "VAULT_KMS_AUTH_ROLE": "kms"}, nil},
		{"approle with sa token", map[string]string{"VAULT_KMS_AUTH_METHOD": "approle", "VAULT_TOKEN": "-", "VAULT_KMS_APPROLE_ROLE_ID": "r", "VAULT_KMS_APPROLE_SECRET_ID_FILE": "/var/lib/vkp/s", "VAULT_KMS_SA_TOKEN_FILE": "/var/run/secrets/x/token"},
			[]string{"VAULT_KMS_SA_TOKEN_FILE is set but VAULT_KMS_AUTH_METHOD=approle does not read it: remove it, or set VAULT_KMS_AUTH_METHOD=kubernetes or jwt"}},
		{"jwt with its file and role", map[string]string{"VAULT_KMS_AUTH_METHOD": "jwt", "VAULT_TOKEN": "-", "VAULT_KMS_AUTH_ROLE": "kms", "VAULT_KMS_SA_TOKEN_FILE": "/var/run/secrets/x/token"}, nil},
		{"jwt with an approle id", map[string]string{"VAULT_KMS_AUTH_METHOD": "jwt", "VAULT_TOKEN": "-", "VAULT_KMS_AUTH_ROLE": "kms", "VAULT_KMS_APPROLE_ROLE_ID": "r"},
			[]string{"VAULT_KMS_APPROLE_ROLE_ID is set but VAULT_KMS_AUTH_METHOD=jwt does not read it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, base(tc.env))
			c, err := Load()
			if err != nil {
				t.Fatal(err)
			}
			got := c.Warnings()
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q; want %d like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %d: %q; want it to start with %q", i, got[i], w)
				}
			}
		})
	}
}

// TestEveryFieldIsAKnownName: the names the unknown-variable check knows
// are the Config fields' tags, so a field added later is never refused.
func TestEveryFieldIsAKnownName(t *testing.T) {
	env := []string{}
	for _, n := range pluginVarNames() {
		env = append(env, n+"=x")
	}
	if len(env) < 10 {
		t.Fatalf("only %d names read from Config's tags", len(env))
	}
	if err := checkUnknown(env); err != nil {
		t.Fatal(err)
	}
	if err := checkUnknown(append(env, "VAULT_KMS_LISTN=x")); err == nil || !strings.Contains(err.Error(), "did you mean VAULT_KMS_LISTEN?") {
		t.Fatalf("a misspelt name: %v", err)
	}
}

// TestServiceLinksAreNotSettings: the variables the kubelet adds for a
// Service such as vault-kms-plugin-metrics are not refused.
func TestServiceLinksAreNotSettings(t *testing.T) {
	for _, name := range []string{
		"VAULT_KMS_PLUGIN_METRICS_SERVICE_HOST", "VAULT_KMS_PLUGIN_METRICS_SERVICE_PORT",
		"VAULT_KMS_PLUGIN_METRICS_SERVICE_PORT_HTTP_METRICS", "VAULT_KMS_PLUGIN_METRICS_PORT",
		"VAULT_KMS_PLUGIN_METRICS_PORT_8787_TCP", "VAULT_KMS_PLUGIN_METRICS_PORT_8787_TCP_PROTO",
		"VAULT_KMS_PLUGIN_METRICS_PORT_8787_TCP_PORT", "VAULT_KMS_PLUGIN_METRICS_PORT_8787_TCP_ADDR",
	} {
		if err := checkUnknown([]string{name + "=10.0.0.1"}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := checkUnknown([]string{"VAULT_KMS_PORTS=1"}); err == nil {
		t.Error("VAULT_KMS_PORTS was accepted as a service link")
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"kitten", "sitting", 3}, {"LISTEN", "LISTN", 1}, {"same", "same", 0},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
