package apiserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// plugin is a running plugin: its socket and its /metrics.
type plugin struct {
	groupCommit bool
	socket      string
	health      string // host:port
	proc        *procs.Process
}

// startPlugin starts the plugin with token and waits until it is ready.
// The key is re-read every second, so that a rotation reaches the next
// apiserver start at once.
func (r *bench) startPlugin(ctx context.Context, token string, groupCommit bool) (*plugin, error) {
	sockDir := filepath.Join(r.dir, "gc-"+strconv.FormatBool(groupCommit))
	if err := os.MkdirAll(sockDir, 0o700); err != nil {
		return nil, err
	}
	p := &plugin{groupCommit: groupCommit, socket: filepath.Join(sockDir, "kms.sock"),
		health: fmt.Sprintf("127.0.0.1:%d", testvault.FreePort(r.h))}
	env := []string{
		"VAULT_ADDR=" + r.b.Vault.Addr,
		"VAULT_TOKEN=" + token,
		"VAULT_KMS_KEY_NAMES=" + keyName,
		"VAULT_KMS_LISTEN=unix://" + p.socket,
		"VAULT_KMS_HEALTH_ADDR=" + p.health,
		"VAULT_KMS_LOG_LEVEL=warn",
		"VAULT_KMS_LOG_FORMAT=text",
		"VAULT_KMS_GROUP_COMMIT=" + strconv.FormatBool(groupCommit),
		"VAULT_KMS_KEY_REFRESH_INTERVAL=1s",
	}
	p.proc = r.b.StartPlugin(r.h, []string{r.b.PluginBin, "serve"}, procs.Env(env...), "http://"+p.health+"/livez")
	_, err := procs.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, "plugin /readyz", func() error {
		code, body, err := bed.HTTPGet("http://" + p.health + "/readyz")
		if err == nil && code != 200 {
			err = fmt.Errorf("%d %s", code, strings.TrimSpace(body))
		}
		return err
	})
	return p, err
}

func (p *plugin) metrics() (metrics, error) {
	return parseMetrics(bed.HTTPGet("http://" + p.health + "/metrics"))
}

// keyID is the key_id the plugin's Status reports now.
func (p *plugin) keyID(ctx context.Context) (string, error) {
	conn, err := grpc.NewClient("unix://"+p.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", fmt.Errorf("dial the plugin: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := kmsapi.NewKeyManagementServiceClient(conn).Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		return "", fmt.Errorf("plugin Status: %w", err)
	}
	return res.KeyId, nil
}

// buildRelease builds the plugin binary into dir with the flags of
// `make build` (static, trimmed, stripped), so that the apiserver talks
// to what a cluster would run.
func buildRelease(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "vault-kms-plugin")
	build := exec.CommandContext(ctx, "go", "build", "-C", root, "-trimpath", "-ldflags=-s -w", "-o", out, "./src/cmd/vault-kms-plugin")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the plugin as make build does: %w\n%s", err, msg)
	}
	return out, nil
}

// versions names the servers measured, as their binaries report.
func versions(ctx context.Context, b *bed.Bed) string {
	var out []string
	for _, bin := range []struct{ path, flag string }{
		{b.APIServerBin, "--version"}, {b.EtcdBin, "--version"}, {testvault.Bin(b.Owner), "version"},
	} {
		raw, err := exec.CommandContext(ctx, bin.path, bin.flag).Output()
		line, _, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n")
		if err != nil || line == "" {
			line = filepath.Base(bin.path) + " (version unknown)"
		}
		out = append(out, line)
	}
	return strings.Join(out, ", ")
}
