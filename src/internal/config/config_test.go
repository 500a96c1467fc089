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
		c.VaultTimeout != 2*time.Second || !c.GroupCommit || c.BatchMaxItems != 250 || c.HealthAddr != "127.0.0.1:8787" {
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
		{"bad method", map[string]string{"VAULT_KMS_AUTH_METHOD": "ldap"}, `VAULT_KMS_AUTH_METHOD="ldap" is not supported`},
		{"no token", map[string]string{"VAULT_TOKEN": "-"}, "needs a token"},
		{"two tokens", map[string]string{"VAULT_KMS_TOKEN_FILE": "/t"}, "keep only one"},
		{"k8s no role", map[string]string{"VAULT_KMS_AUTH_METHOD": "kubernetes"}, "needs VAULT_KMS_AUTH_ROLE"},
		{"approle no id", map[string]string{"VAULT_KMS_AUTH_METHOD": "approle", "VAULT_KMS_APPROLE_SECRET_ID_FILE": "/s"}, "needs VAULT_KMS_APPROLE_ROLE_ID"},
		{"approle no file", map[string]string{"VAULT_KMS_AUTH_METHOD": "approle", "VAULT_KMS_APPROLE_ROLE_ID": "r"}, "needs VAULT_KMS_APPROLE_SECRET_ID_FILE"},
		{"cert no cert", map[string]string{"VAULT_KMS_AUTH_METHOD": "cert"}, "needs VAULT_CLIENT_CERT"},
		{"bad level", map[string]string{"VAULT_KMS_LOG_LEVEL": "loud"}, "VAULT_KMS_LOG_LEVEL"},
		{"bad format", map[string]string{"VAULT_KMS_LOG_FORMAT": "xml"}, "VAULT_KMS_LOG_FORMAT"},
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
