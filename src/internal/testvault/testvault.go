// Package testvault starts a real Vault server (the test bed's bin/vault)
// on 127.0.0.1 for integration tests, and for the benchmark.
package testvault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"
)

// Server is a running Vault.
type Server struct {
	Addr      string // http(s)://127.0.0.1:port
	RootToken string
	CACert    string // PEM file of the CA, for TLS servers
	Dir       string // working directory: config, storage, logs
	ExtraAddr string // http(s)://127.0.0.1:port of Options.ExtraListener or ExtraTLS
	// ExtraCACert is the PEM file of the CA of Options.ExtraTLS.
	ExtraCACert string

	t         TB
	cmd       *exec.Cmd
	log       *Buffer
	unsealKey string
	args      []string
	exited    chan struct{}
}

// TB is what a server needs of its owner: a *testing.T or *testing.B, or
// a program that is not a test (the benchmark) with its own implementation.
// Fatal and Fatalf must not return.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
	Cleanup(func())
	TempDir() string
}

// Options of a server.
type Options struct {
	// Persistent keeps data in a file store across Stop/Start (otherwise a
	// dev server, in memory).
	Persistent bool
	// TLS serves https with a generated CA (dev servers only).
	TLS bool
	// ServingCert serves https with a certificate the test made (file
	// storage only): Vault's certificate from the test's own CA, as in
	// production.
	ServingCert *ServingCert
	// ExtraListener, for dev servers, adds a second plain-HTTP listener
	// with these options (HCL inside listener "tcp" { }), served at
	// ExtraAddr: e.g. the JSON limits a production listener sets.
	ExtraListener string
	// ExtraTLS, for dev servers, serves the second listener over https
	// with this certificate (with ExtraListener's options, if any): one
	// Vault, with one storage and audit log, on both transports.
	ExtraTLS *ServingCert
}

// ServingCert is Vault's TLS certificate and key, and the CA that signed
// them, as PEM files.
type ServingCert struct {
	CertFile, KeyFile, CAFile string
}

// Bin is the path of the Vault binary built by scripts/testbed.sh.
func Bin(t TB) string {
	if p := os.Getenv("VAULT_BIN"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "bin", "vault")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && filepath.Base(filepath.Dir(dir)) != "src" {
			if _, err := os.Stat(filepath.Join(dir, "Makefile")); err == nil {
				t.Fatalf("no Vault binary at %s: run 'make testbed' (or scripts/testbed.sh vault) first", p)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no bin/vault found above the test's directory: run 'make testbed' first")
		}
		dir = parent
	}
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts a Vault server and stops it when the test ends.
func Start(t TB, o Options) *Server {
	t.Helper()
	s := &Server{t: t, Dir: t.TempDir()}
	port := FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	switch {
	case o.Persistent || o.ServingCert != nil:
		scheme, tlsCfg := "http", "tls_disable = true"
		if c := o.ServingCert; c != nil {
			scheme, s.CACert = "https", c.CAFile
			tlsCfg = fmt.Sprintf("tls_cert_file = %q\n  tls_key_file = %q", c.CertFile, c.KeyFile)
		}
		cfg := fmt.Sprintf(`storage "file" { path = %q }
listener "tcp" {
  address = %q
  %s
}
disable_mlock = true
api_addr = "%s://%s"
`, filepath.Join(s.Dir, "data"), addr, tlsCfg, scheme, addr)
		cfgPath := filepath.Join(s.Dir, "vault.hcl")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Addr = scheme + "://" + addr
		s.args = []string{"server", "-config=" + cfgPath}
	case o.TLS:
		s.Addr = "https://" + addr
		s.RootToken = "root"
		s.CACert = filepath.Join(s.Dir, "vault-ca.pem")
		s.args = []string{"server", "-dev", "-dev-tls", "-dev-tls-cert-dir=" + s.Dir, "-dev-root-token-id=root", "-dev-listen-address=" + addr, "-dev-no-store-token"}
	default:
		s.Addr = "http://" + addr
		s.RootToken = "root"
		s.args = []string{"server", "-dev", "-dev-root-token-id=root", "-dev-listen-address=" + addr, "-dev-no-store-token"}
	}
	if (o.ExtraListener != "" || o.ExtraTLS != nil) && !o.Persistent && o.ServingCert == nil {
		s.args = append(s.args, "-config="+s.writeExtraListener(o.ExtraListener, o.ExtraTLS))
	}
	s.Start()
	t.Cleanup(s.Stop)
	if o.Persistent || o.ServingCert != nil {
		s.initialize()
	}
	return s
}

// Start (re)starts a stopped server and waits until it serves (unsealing a
// persistent one that was initialised before).
func (s *Server) Start() {
	s.t.Helper()
	s.log = &Buffer{}
	s.cmd = exec.Command(Bin(s.t), s.args...)
	s.cmd.Env = append(os.Environ(), "HOME="+s.Dir, "VAULT_ADDR=", "VAULT_TOKEN=")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	// Vault dies with its owner even if a timeout or a hard kill ends the
	// owner before its cleanups run.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start vault: %v", err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	s.waitListening()
	if s.unsealKey != "" {
		s.unseal()
	}
}

// writeExtraListener writes the config of a second listener, over https
// with cert if not nil, and returns its path.
func (s *Server) writeExtraListener(options string, cert *ServingCert) string {
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(s.t))
	scheme, tlsCfg := "http", "tls_disable = true"
	if cert != nil {
		scheme, tlsCfg = "https", fmt.Sprintf("tls_cert_file = %q\n  tls_key_file = %q", cert.CertFile, cert.KeyFile)
		s.ExtraCACert = cert.CAFile
	}
	cfg := fmt.Sprintf("listener \"tcp\" {\n  address = %q\n  %s\n  %s\n}\n", addr, tlsCfg, options)
	path := filepath.Join(s.Dir, "extra-listener.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.ExtraAddr = scheme + "://" + addr
	return path
}

// Kill kills the server at once (SIGKILL), as a crash or a lost machine
// would; Start brings back a persistent one.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Running reports whether the server's process is alive.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Stop stops the server; Start brings it back (with its data if persistent).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	if s.t.Failed() {
		s.t.Logf("vault log:\n%s", s.log.String())
	}
	s.cmd = nil
}

func (s *Server) waitListening() {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.t.Fatalf("vault exited: %s", s.log.String())
		default:
		}
		if s.CACert != "" {
			// -dev-tls writes its CA once it starts, and a loaded machine
			// can catch the file half-written.
			if b, err := os.ReadFile(s.CACert); err != nil || !bytes.Contains(b, []byte("-----END CERTIFICATE-----")) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		c := s.rawClient("")
		if _, err := c.Sys().SealStatus(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("vault did not start within 60s: %s", s.log.String())
}

// Config is what the server's clients are made from: its address and CA,
// no retries, a 10 s timeout. Each call makes a new one, with its own HTTP
// transport, for a caller to tune.
func (s *Server) Config() *api.Config { return s.configFor(s.Addr, s.CACert) }

// ExtraConfig is Config for the second listener, at ExtraAddr.
func (s *Server) ExtraConfig() *api.Config { return s.configFor(s.ExtraAddr, s.ExtraCACert) }

func (s *Server) configFor(addr, caCert string) *api.Config {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = 10 * time.Second
	if caCert != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: caCert}); err != nil {
			s.t.Fatal(err)
		}
	}
	return cfg
}

func (s *Server) rawClient(token string) *api.Client {
	c, err := api.NewClient(s.Config())
	if err != nil {
		s.t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// Client returns a root client.
func (s *Server) Client() *api.Client { return s.rawClient(s.RootToken) }

func (s *Server) initialize() {
	c := s.rawClient("")
	res, err := c.Sys().Init(&api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		s.t.Fatalf("vault init: %v", err)
	}
	s.unsealKey, s.RootToken = res.KeysB64[0], res.RootToken
	s.unseal()
}

func (s *Server) unseal() {
	c := s.rawClient("")
	if _, err := c.Sys().Unseal(s.unsealKey); err != nil {
		s.t.Fatalf("vault unseal: %v", err)
	}
	// A freshly unsealed server needs a moment before it serves requests.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if h, err := c.Sys().Health(); err == nil && !h.Sealed && h.ClusterID != "" {
			if _, err := s.Client().Sys().ListMounts(); err == nil {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatal("vault did not become active after unseal")
}

// Seal seals the server (dev servers can be unsealed again only if persistent).
func (s *Server) Seal() {
	if err := s.Client().Sys().Seal(); err != nil {
		s.t.Fatal(err)
	}
}

// Unseal unseals a persistent server.
func (s *Server) Unseal() { s.unseal() }

// Write writes with the root token and fails the test on error.
func (s *Server) Write(path string, data map[string]any) *api.Secret {
	s.t.Helper()
	sec, err := s.Client().Logical().WriteWithContext(context.Background(), path, data)
	if err != nil {
		s.t.Fatalf("vault write %s: %v", path, err)
	}
	return sec
}

// EnableTransit mounts transit at mount and creates keys in it.
func (s *Server) EnableTransit(mount string, keys ...string) {
	s.t.Helper()
	err := s.Client().Sys().Mount(mount, &api.MountInput{Type: "transit"})
	var re *api.ResponseError
	if err != nil && !(errors.As(err, &re) && re.StatusCode == 400) {
		s.t.Fatalf("mount transit: %v", err)
	}
	for _, k := range keys {
		s.Write(mount+"/keys/"+k, nil)
	}
}

// EnableFileAudit enables a file audit device that writes to path: one
// JSON line per request and per response.
func (s *Server) EnableFileAudit(path string) {
	s.t.Helper()
	err := s.Client().Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": path},
	})
	if err != nil {
		s.t.Fatalf("enable the file audit device: %v", err)
	}
}

// Rotate rotates a transit key and returns its new latest version.
func (s *Server) Rotate(mount, key string) int {
	s.t.Helper()
	s.Write(mount+"/keys/"+key+"/rotate", nil)
	sec, err := s.Client().Logical().Read(mount + "/keys/" + key)
	if err != nil {
		s.t.Fatal(err)
	}
	v, _ := strconv.Atoi(fmt.Sprint(sec.Data["latest_version"]))
	return v
}

// Policy writes a policy.
func (s *Server) Policy(name, hcl string) {
	s.t.Helper()
	if err := s.Client().Sys().PutPolicy(name, hcl); err != nil {
		s.t.Fatalf("put policy: %v", err)
	}
}

// Token creates a token with the given options and returns it.
func (s *Server) Token(req *api.TokenCreateRequest) string {
	s.t.Helper()
	sec, err := s.Client().Auth().Token().Create(req)
	if err != nil {
		s.t.Fatalf("create token: %v", err)
	}
	return sec.Auth.ClientToken
}

// PID is the process id of the running server.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Log is everything the server printed so far.
func (s *Server) Log() string { return s.log.String() }

// KMSPolicy is the least privilege the plugin needs on mount for keys.
func KMSPolicy(mount string, keys ...string) string {
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "path %q { capabilities = [\"update\"] }\n", mount+"/encrypt/"+k)
		fmt.Fprintf(&b, "path %q { capabilities = [\"update\"] }\n", mount+"/decrypt/"+k)
		fmt.Fprintf(&b, "path %q { capabilities = [\"read\"] }\n", mount+"/keys/"+k)
	}
	return b.String()
}

// Buffer is a bytes.Buffer safe for a process's writes and a test's reads
// at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
