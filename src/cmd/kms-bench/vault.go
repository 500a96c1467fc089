package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// Names in the benchmark's Vault.
const (
	transitMount = "transit"
	keyName      = "bench"
)

// vaultServer is a Vault dev server on 127.0.0.1 with transit, the key
// "bench" and a file audit device that counts Vault requests.
type vaultServer struct {
	addr  string // http://127.0.0.1:port
	token string // root
	proc  *proc
	audit *auditLog
}

// startVault starts bin/vault in dev mode, with HOME in dir.
func startVault(ctx context.Context, bin, dir string, cl *cleanups) (*vaultServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	v := &vaultServer{addr: fmt.Sprintf("http://127.0.0.1:%d", port), token: hex.EncodeToString(tok)}
	home := filepath.Join(dir, "vault-home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return nil, err
	}
	v.proc, err = startProc("vault", filepath.Join(dir, "vault.log"), childEnv("HOME="+home),
		bin, "server", "-dev", "-dev-root-token-id="+v.token,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port), "-dev-no-store-token")
	if err != nil {
		return nil, err
	}
	cl.add(v.proc.stop)
	if err := v.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := v.setup(ctx, filepath.Join(dir, "audit.log")); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, v.proc.tail(20))
	}
	return v, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// client is a root client whose pool keeps conns idle connections, without
// retries: what a well-configured direct caller of transit uses.
func (v *vaultServer) client(conns int, timeout time.Duration) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = v.addr
	cfg.MaxRetries = 0
	cfg.Timeout = timeout
	t := cfg.HttpClient.Transport.(*http.Transport)
	t.MaxIdleConns = conns
	t.MaxIdleConnsPerHost = conns
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(v.token)
	c.ClearNamespace()
	return c, nil
}

func (v *vaultServer) waitReady(ctx context.Context) error {
	c, err := v.client(1, 2*time.Second)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if h, err := c.Sys().HealthWithContext(ctx); err == nil && h.Initialized && !h.Sealed {
			return nil
		}
		switch {
		case v.proc.exited():
			return fmt.Errorf("vault exited at start\n%s", v.proc.tail(20))
		case time.Now().After(deadline):
			return fmt.Errorf("vault did not serve within 60s\n%s", v.proc.tail(20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (v *vaultServer) setup(ctx context.Context, auditPath string) error {
	c, err := v.client(1, 10*time.Second)
	if err != nil {
		return err
	}
	if err := c.Sys().MountWithContext(ctx, transitMount, &api.MountInput{Type: "transit"}); err != nil {
		return fmt.Errorf("enable transit: %w", err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, transitMount+"/keys/"+keyName, nil); err != nil {
		return fmt.Errorf("create transit key: %w", err)
	}
	err = c.Sys().EnableAuditWithOptionsWithContext(ctx, "file", &api.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": auditPath},
	})
	if err != nil {
		return fmt.Errorf("enable the file audit device: %w", err)
	}
	v.audit = &auditLog{path: auditPath}
	return nil
}

var buildDate = regexp.MustCompile(`, built \S+`)

// vaultVersion is the first line of `vault version`.
func vaultVersion(ctx context.Context, bin string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "version")
	cmd.Env = childEnv()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", bin, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	// A build without a stamped date (such as the test bed's) makes one up
	// from the clock; it would differ on every run, so leave it out.
	return buildDate.ReplaceAllString(line, ""), nil
}
