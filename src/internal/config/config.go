// Package config reads the plugin's settings from the environment. The
// variable names are a user-facing contract shared with the Helm chart.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"k8s.io/kms/pkg/util"
)

// Prefix is the prefix of every plugin-specific variable.
const Prefix = "VAULT_KMS"

// Auth methods the plugin can log in with.
const (
	AuthToken      = "token"
	AuthKubernetes = "kubernetes"
	AuthAppRole    = "approle"
	AuthCert       = "cert"
	AuthJWT        = "jwt"
)

// Config holds the plugin's own settings. The standard VAULT_* variables
// (address, TLS, namespace, token) are read by the Vault client itself.
type Config struct {
	KeyNames    []string `envconfig:"KEY_NAMES" required:"true" desc:"transit keys, comma-separated; the first encrypts, every listed key can decrypt"`
	TransitPath string   `envconfig:"TRANSIT_PATH" default:"transit" desc:"mount path of the transit engine; /transit and transit are the same"`
	Listen      string   `envconfig:"LISTEN" default:"unix:///var/run/kmsplugin/socket.sock" desc:"socket to serve on, written as the EncryptionConfiguration endpoint"`
	SocketMode  string   `envconfig:"SOCKET_MODE" default:"0600" desc:"file mode of the socket, octal"`
	SocketGroup string   `envconfig:"SOCKET_GROUP" desc:"numeric group id the socket is given to (default: the plugin's own, root); give the group access with SOCKET_MODE, e.g. 0660"`

	AuthMethod          string `envconfig:"AUTH_METHOD" default:"token" desc:"token, kubernetes, jwt, approle or cert"`
	AuthMount           string `envconfig:"AUTH_MOUNT" desc:"auth mount path (default: the method's name)"`
	AuthRole            string `envconfig:"AUTH_ROLE" desc:"role for kubernetes and jwt auth (required) or cert auth (optional)"`
	TokenFile           string `envconfig:"TOKEN_FILE" desc:"file holding the Vault token (for example a Vault Agent sink); re-read when it changes"`
	SATokenFile         string `envconfig:"SA_TOKEN_FILE" default:"/var/run/secrets/kubernetes.io/serviceaccount/token" desc:"JWT file for kubernetes and jwt auth (a projected service-account token, or a file a hosted control plane or SPIFFE agent writes), re-read at every login"`
	AppRoleRoleID       string `envconfig:"APPROLE_ROLE_ID" desc:"AppRole role_id"`
	AppRoleSecretIDFile string `envconfig:"APPROLE_SECRET_ID_FILE" desc:"file holding the AppRole secret_id, re-read at every login"`

	VaultTimeout       time.Duration `envconfig:"VAULT_TIMEOUT" default:"2s" desc:"timeout of each Vault request; keep it below the apiserver's KMS timeout (3s by default)"`
	KeyRefreshInterval time.Duration `envconfig:"KEY_REFRESH_INTERVAL" default:"20s" desc:"how often the key's latest version is read from Vault; a rotation is picked up within this time"`
	StatusGrace        time.Duration `envconfig:"STATUS_GRACE" default:"2m" desc:"how long Status keeps reporting the last verified key_id while Vault is unreachable, counted from the last good key read; the apiserver writes with its cached DEK meanwhile (and for up to 3m after Status fails), so a key deleted during the outage costs that much data; 0 fails Status at once, making every apiserver unready together on a short Vault outage"`
	ShutdownTimeout    time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"10s" desc:"how long SIGTERM waits for in-flight calls before closing"`

	HealthAddr  string `envconfig:"HEALTH_ADDR" default:"127.0.0.1:8787" desc:"host:port of /livez, /readyz and /metrics; empty turns the HTTP server off"`
	GroupCommit bool   `envconfig:"GROUP_COMMIT" default:"true" desc:"send concurrent requests for one key to Vault together as one batch request"`
	// Batches are capped to pass Vault's and OpenBao's request limits.
	BatchMaxItems int `envconfig:"BATCH_MAX_ITEMS" default:"250" desc:"most requests one batch request to Vault carries; keep it within your Vault's or OpenBao's JSON request limits"`
	// The default is server.DefaultMaxInflight; config imports none of ours.
	MaxInflight int `envconfig:"MAX_INFLIGHT" default:"512" desc:"most Encrypt and Decrypt calls served at once; as many more wait within their deadline, the rest are refused with ResourceExhausted; raise it only with the container's memory limit"`

	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"json" desc:"json or text"`

	// warnings are settings that do no harm but that the plugin ignores;
	// serve logs them.
	warnings []string
}

// StandardVaultVars lists the Vault client variables the plugin honours, for
// --help. vault/api reads them exactly as the Vault CLI does.
var StandardVaultVars = [][2]string{
	{"VAULT_ADDR", "Vault address, e.g. https://vault.example.com:8200 (required)"},
	{"VAULT_CACERT", "PEM file of the CA that signed Vault's certificate"},
	{"VAULT_CAPATH", "directory of PEM CA certificates"},
	{"VAULT_CLIENT_CERT", "client certificate (PEM) for TLS, and for cert auth"},
	{"VAULT_CLIENT_KEY", "client key (PEM) for TLS, and for cert auth"},
	{"VAULT_TLS_SERVER_NAME", "server name to verify Vault's certificate against"},
	{"VAULT_NAMESPACE", "Vault Enterprise namespace"},
	{"VAULT_TOKEN", "token for VAULT_KMS_AUTH_METHOD=token"},
	{"VAULT_SKIP_VERIFY", "do not verify Vault's certificate (insecure; logged as a warning)"},
}

// maxBatchMaxItems is Vault's default max_json_array_element_count: a
// batch_input longer than that is refused by any Vault.
const maxBatchMaxItems = 10000

// maxMaxInflight bounds VAULT_KMS_MAX_INFLIGHT: twice it is the streams
// of one connection, which gRPC counts in a uint32, and far more than any
// memory limit allows.
const maxMaxInflight = 1 << 20

// minKeyRefreshInterval is the floor of KeyRefreshInterval.
const minKeyRefreshInterval = time.Second

// GoRuntimeVars lists the Go runtime variables the plugin's memory use
// depends on, for --help.
var GoRuntimeVars = [][2]string{
	{"GOMEMLIMIT", "soft memory limit of the Go runtime, e.g. 120MiB; keep it under the container's limit"},
	{"GOGC", "garbage collection target percentage (default 200 in serve: fewer collections per call)"},
}

// keyNameRE is transit's own rule for key names; it also guarantees a name
// never contains ':' which the ciphertext format relies on.
var keyNameRE = regexp.MustCompile(`^\w(([\w.-]+)?\w)?$`)

// Load reads and validates the configuration from the environment. A
// VAULT_KMS_* variable the plugin does not read is an error; one the
// chosen auth method does not read is a warning (see Warnings).
func Load() (*Config, error) {
	if err := checkUnknown(os.Environ()); err != nil {
		return nil, err
	}
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return nil, explain(err)
	}
	if err := c.validate(os.Getenv); err != nil {
		return nil, err
	}
	c.warnings = inapplicable(c.AuthMethod, os.Getenv)
	return &c, nil
}

// Warnings are the settings Load found set but ignored, for the log.
func (c *Config) Warnings() []string { return c.warnings }

func explain(err error) error {
	var pe *envconfig.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s=%q is not valid: %s", pe.KeyName, pe.Value, hint(pe.TypeName))
	}
	if strings.Contains(err.Error(), "KEY_NAMES") {
		return fmt.Errorf("%s_KEY_NAMES is required: set it to the transit key name(s), comma-separated, e.g. %s_KEY_NAMES=kube-secrets", Prefix, Prefix)
	}
	return err
}

func hint(typeName string) string {
	switch typeName {
	case "time.Duration":
		return "write a duration such as 2s, 500ms or 1m"
	case "bool":
		return "write true or false"
	case "int":
		return "write a whole number such as 250"
	}
	return "fix the value"
}

func (c *Config) validate(getenv func(string) string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	addr := getenv("VAULT_ADDR")
	if addr == "" {
		bad("VAULT_ADDR is not set: set it to your Vault's URL, e.g. VAULT_ADDR=https://vault.example.com:8200")
	} else if u, err := url.Parse(addr); err == nil && u.Scheme == "unix" {
		bad("VAULT_ADDR=%q is a unix socket, which the plugin does not support: point VAULT_ADDR at a TCP listener of Vault Agent or Proxy instead, e.g. http://127.0.0.1:8100", addr)
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("VAULT_ADDR=%q is not an http(s) URL: write it as https://host:port", addr)
	}
	// vault/api sends every request to VAULT_AGENT_ADDR when it is set,
	// past the VAULT_ADDR checked above.
	if agent := getenv("VAULT_AGENT_ADDR"); agent != "" {
		bad("VAULT_AGENT_ADDR=%q is set: the Vault client would send every request there instead of VAULT_ADDR; unset it, and to go through Vault Agent put its address in VAULT_ADDR", agent)
	}

	if len(c.KeyNames) == 0 {
		bad("%s_KEY_NAMES is empty: list at least one transit key", Prefix)
	}
	seen := map[string]bool{}
	for i, k := range c.KeyNames {
		k = strings.TrimSpace(k)
		c.KeyNames[i] = k
		switch {
		case !keyNameRE.MatchString(k):
			bad("%s_KEY_NAMES: %q is not a transit key name: use letters, digits, '_', '-' and '.'", Prefix, k)
		case seen[k]:
			bad("%s_KEY_NAMES: %q is listed twice", Prefix, k)
		}
		seen[k] = true
	}

	mount := strings.Trim(c.TransitPath, "/")
	if mount == "" || path.Clean(mount) != mount || strings.Contains(mount, "..") {
		bad("%s_TRANSIT_PATH=%q is not a mount path: write it like transit or /transit", Prefix, c.TransitPath)
	}
	c.TransitPath = mount

	// OpenBao refuses more than 1,000 JSON strings by default, and an
	// encrypt item is three of them.
	if c.BatchMaxItems < 1 || c.BatchMaxItems > maxBatchMaxItems {
		bad("%s_BATCH_MAX_ITEMS=%d is out of range: use 1 to %d, and at most 300 against OpenBao's default request limits", Prefix, c.BatchMaxItems, maxBatchMaxItems)
	}

	// Each call in flight holds tens of KiB (a Vault request, or a place
	// in a batch); a million would never fit a container.
	if c.MaxInflight < 1 || c.MaxInflight > maxMaxInflight {
		bad("%s_MAX_INFLIGHT=%d is out of range: use 1 to %d; 512 fits the chart's 128Mi memory limit", Prefix, c.MaxInflight, maxMaxInflight)
	}

	sock, err := util.ParseEndpoint(c.Listen)
	switch {
	case err != nil || !strings.HasPrefix(c.Listen, "unix://"):
		bad("%s_LISTEN=%q is not a unix socket endpoint: write it like unix:///var/run/kmsplugin/socket.sock", Prefix, c.Listen)
	case strings.HasPrefix(sock, "@"):
		// An abstract socket has no file mode or owner: every process in
		// the network namespace (the node's, for the chart) could call it.
		bad("%s_LISTEN=%q is an abstract socket, which anyone on the node's network could call: use a socket file, e.g. unix:///var/run/kmsplugin/socket.sock", Prefix, c.Listen)
	case !strings.HasPrefix(sock, "/"):
		bad("%s_LISTEN=%q is a relative path: write an absolute one, e.g. unix:///var/run/kmsplugin/socket.sock", Prefix, c.Listen)
	default:
		if err := checkDedicatedDir(Prefix+"_LISTEN", path.Dir(sock)); err != nil {
			errs = append(errs, err)
		}
	}
	mode, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || mode > 0o777 {
		bad("%s_SOCKET_MODE=%q is not an octal file mode: write it like 0600", Prefix, c.SocketMode)
	}
	if c.SocketGroup != "" {
		gid, err := strconv.ParseUint(c.SocketGroup, 10, 31)
		switch {
		case err != nil:
			bad("%s_SOCKET_GROUP=%q is not a numeric group id: write it like 65534", Prefix, c.SocketGroup)
		case gid != 0 && mode&0o060 != 0o060:
			bad("%s_SOCKET_GROUP=%s gets no access with %s_SOCKET_MODE=%s: give the group read and write, e.g. %s_SOCKET_MODE=0660", Prefix, c.SocketGroup, Prefix, c.SocketMode, Prefix)
		}
	}
	// Not SA_TOKEN_FILE: in the DaemonSet it is the pod's projected token,
	// not a file of the node (the chart checks the static pod's jwtFile).
	for name, file := range map[string]string{
		Prefix + "_TOKEN_FILE":             c.TokenFile,
		Prefix + "_APPROLE_SECRET_ID_FILE": c.AppRoleSecretIDFile,
	} {
		if file != "" {
			if err := checkDedicatedDir(name, path.Dir(file)); err != nil {
				errs = append(errs, err)
			}
		}
	}

	c.AuthMount = strings.Trim(c.AuthMount, "/")
	if c.AuthMount == "" {
		c.AuthMount = c.AuthMethod
	}
	switch c.AuthMethod {
	case AuthToken:
		hasEnv := getenv("VAULT_TOKEN") != ""
		switch {
		case hasEnv && c.TokenFile != "":
			bad("both VAULT_TOKEN and %s_TOKEN_FILE are set: keep only one", Prefix)
		case !hasEnv && c.TokenFile == "":
			bad("%s_AUTH_METHOD=token needs a token: set VAULT_TOKEN or %s_TOKEN_FILE, or pick another auth method", Prefix, Prefix)
		}
	case AuthKubernetes:
		if c.AuthRole == "" {
			bad("%s_AUTH_METHOD=kubernetes needs %s_AUTH_ROLE: set it to the Vault role bound to this service account", Prefix, Prefix)
		}
		if c.SATokenFile == "" {
			bad("%s_AUTH_METHOD=kubernetes needs %s_SA_TOKEN_FILE: set it to the service-account token path", Prefix, Prefix)
		}
	case AuthJWT:
		if c.AuthRole == "" {
			bad("%s_AUTH_METHOD=jwt needs %s_AUTH_ROLE: set it to the role on Vault's jwt auth mount whose bound_audiences and bound_subject match this JWT", Prefix, Prefix)
		}
		if c.SATokenFile == "" {
			bad("%s_AUTH_METHOD=jwt needs %s_SA_TOKEN_FILE: set it to the file holding the JWT, e.g. a projected service-account token", Prefix, Prefix)
		}
	case AuthAppRole:
		if c.AppRoleRoleID == "" {
			bad("%s_AUTH_METHOD=approle needs %s_APPROLE_ROLE_ID", Prefix, Prefix)
		}
		if c.AppRoleSecretIDFile == "" {
			bad("%s_AUTH_METHOD=approle needs %s_APPROLE_SECRET_ID_FILE: set it to a file holding the secret_id", Prefix, Prefix)
		}
	case AuthCert:
		if getenv("VAULT_CLIENT_CERT") == "" || getenv("VAULT_CLIENT_KEY") == "" {
			bad("%s_AUTH_METHOD=cert needs VAULT_CLIENT_CERT and VAULT_CLIENT_KEY: set them to the client certificate and key files", Prefix)
		}
	default:
		bad("%s_AUTH_METHOD=%q is not supported: use token, kubernetes, jwt, approle or cert", Prefix, c.AuthMethod)
	}

	for name, d := range map[string]time.Duration{
		"VAULT_TIMEOUT":        c.VaultTimeout,
		"KEY_REFRESH_INTERVAL": c.KeyRefreshInterval,
		"SHUTDOWN_TIMEOUT":     c.ShutdownTimeout,
	} {
		if d <= 0 {
			bad("%s_%s=%s must be positive", Prefix, name, d)
		}
	}
	// Below a second the key's version would be read from Vault more often
	// than the apiserver calls Status, for no rotation picked up sooner.
	if c.KeyRefreshInterval > 0 && c.KeyRefreshInterval < minKeyRefreshInterval {
		bad("%s_KEY_REFRESH_INTERVAL=%s is below the floor of %s: set it to %s or more (the default is 20s)", Prefix, c.KeyRefreshInterval, minKeyRefreshInterval, minKeyRefreshInterval)
	}

	if c.StatusGrace < 0 {
		bad("%s_STATUS_GRACE=%s must not be negative: use 0 to fail Status as soon as Vault is unreachable, or a duration like 2m", Prefix, c.StatusGrace)
	}

	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("%s_LOG_LEVEL=%q is not a level: use debug, info, warn or error", Prefix, c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		bad("%s_LOG_FORMAT=%q is not a format: use json or text", Prefix, c.LogFormat)
	}
	return errors.Join(errs...)
}

// ListenEndpoint is the endpoint serve listens on: VAULT_KMS_LISTEN, or
// Listen's default (kept in its tag alone, which --help prints too), for
// commands that call a plugin running with the same environment.
func ListenEndpoint() string {
	if v := os.Getenv(Prefix + "_LISTEN"); v != "" {
		return v
	}
	f, _ := reflect.TypeFor[Config]().FieldByName("Listen")
	return f.Tag.Get("default")
}

// SocketPath is the filesystem path of the Listen endpoint.
func (c *Config) SocketPath() string {
	p, _ := util.ParseEndpoint(c.Listen)
	return p
}

// SocketGID is SocketGroup parsed, or -1 when the socket keeps the
// plugin's own group.
func (c *Config) SocketGID() int {
	if c.SocketGroup == "" {
		return -1
	}
	gid, _ := strconv.Atoi(c.SocketGroup)
	return gid
}

// SocketFileMode is SocketMode parsed.
func (c *Config) SocketFileMode() os.FileMode {
	m, _ := strconv.ParseUint(c.SocketMode, 8, 32)
	return os.FileMode(m)
}
