package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	v1beta1 "k8s.io/kms/apis/v1beta1"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
)

// plugin is a running vault-kms-plugin and one connection to its socket.
type plugin struct {
	groupCommit bool
	via         string // viaHTTP or viaTLS: how it reaches Vault
	sock        string
	proc        *procs.Process
	conn        *grpc.ClientConn
	v2          kmsapi.KeyManagementServiceClient
	v1          v1beta1.KeyManagementServiceClient
}

// group is "on" or "off".
func (p *plugin) group() string {
	if p.groupCommit {
		return "on"
	}
	return "off"
}

func (p *plugin) label() string { return "group commit " + p.group() + ", " + p.via }

// buildPlugin builds the plugin as `make build` does, into tmp/ of the
// repo; with pprof, with the endpoint of cmd's pprof_bench.go and its
// symbols.
func buildPlugin(ctx context.Context, root string, pprof bool) (string, error) {
	bin := filepath.Join(root, "tmp", "vault-kms-plugin")
	args := []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./src/cmd/vault-kms-plugin"}
	if pprof {
		bin += "-pprof"
		args = []string{"build", "-trimpath", "-tags", "benchpprof", "-o", bin, "./src/cmd/vault-kms-plugin"}
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the plugin: %w\n%s", err, out)
	}
	return bin, nil
}

// startPlugin starts the plugin on dir/kms.sock against v over via and
// waits until its own probe says it is healthy. The key is refreshed
// hourly so that the only Vault requests in the Status window are those
// Status causes.
func startPlugin(ctx context.Context, h *harness.Program, bin string, v *vaultServer, via, dir string, groupCommit bool, extraEnv []string) (*plugin, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &plugin{groupCommit: groupCommit, via: via, sock: filepath.Join(dir, "kms.sock")}
	endpoint := "unix://" + p.sock
	var err error
	env := append(append(v.env(via),
		"VAULT_KMS_KEY_NAMES="+keyName,
		"VAULT_KMS_LISTEN="+endpoint,
		"VAULT_KMS_HEALTH_ADDR=",
		"VAULT_KMS_LOG_LEVEL=warn",
		"VAULT_KMS_GROUP_COMMIT="+strconv.FormatBool(groupCommit),
		"VAULT_KMS_KEY_REFRESH_INTERVAL=1h",
	), extraEnv...)
	p.proc, err = h.Start("vault-kms-plugin ("+p.label()+")", filepath.Join(dir, "plugin.log"), procs.Env(env...), bin)
	if err != nil {
		return nil, err
	}
	probe := exec.CommandContext(ctx, bin, "probe", "-endpoint", endpoint, "-wait", "20s")
	probe.Env = procs.Env()
	if out, err := probe.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s is not healthy: %v: %s\n%s", p.proc.Name, err, out, harness.Output(p.proc))
	}
	if p.conn, err = dialUnix(p.sock); err != nil {
		return nil, err
	}
	h.Cleanup(func() { p.conn.Close() })
	p.v2 = kmsapi.NewKeyManagementServiceClient(p.conn)
	p.v1 = v1beta1.NewKeyManagementServiceClient(p.conn)
	return p, nil
}

// usage is the plugin's CPU time so far and its peak RSS.
func (p *plugin) usage() (cpu time.Duration, hwm int64, err error) {
	if !p.proc.Running() {
		return 0, 0, fmt.Errorf("%s exited\n%s", p.proc.Name, harness.Output(p.proc))
	}
	if cpu, err = procCPU(p.proc.PID()); err != nil {
		return 0, 0, err
	}
	_, hwm, err = procMem(p.proc.PID())
	return cpu, hwm, err
}

// status is one KMS v2 Status call.
func (p *plugin) status(ctx context.Context, _ int) error {
	res, err := p.v2.Status(ctx, &kmsapi.StatusRequest{})
	if err == nil && res.Healthz != "ok" {
		err = fmt.Errorf("healthz %q", res.Healthz)
	}
	return err
}
