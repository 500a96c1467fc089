package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1beta1 "k8s.io/kms/apis/v1beta1"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// plugin is a running vault-kms-plugin with one gRPC connection to its
// socket, as kube-apiserver keeps one per KMS provider.
type plugin struct {
	proc    *procs.Process
	v1      v1beta1.KeyManagementServiceClient
	v2      kmsapi.KeyManagementServiceClient
	metrics string // URL of its /metrics
}

// pluginBin is the binary `make build` wrote.
func pluginBin(t *testing.T) string {
	t.Helper()
	root, err := procs.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "vault-kms-plugin")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no plugin binary at %s: run 'make build' (make faults does) first", bin)
	}
	return bin
}

// startPlugin starts the plugin against vaultAddr with env (VAULT_* and
// VAULT_KMS_* settings beyond the socket and health address), waits until
// its own probe says it is healthy, and stops it when the test ends.
func startPlugin(t *testing.T, name, vaultAddr string, env ...string) *plugin {
	t.Helper()
	bin := pluginBin(t)
	dir := t.TempDir()
	endpoint := "unix://" + filepath.Join(dir, "kms.sock")
	healthAddr := fmt.Sprintf("127.0.0.1:%d", testvault.FreePort(t))
	all := append([]string{
		"VAULT_ADDR=" + vaultAddr,
		"VAULT_KMS_LISTEN=" + endpoint,
		"VAULT_KMS_HEALTH_ADDR=" + healthAddr,
		"VAULT_KMS_LOG_LEVEL=warn",
	}, env...)
	proc, err := procs.Start(name, filepath.Join(dir, "plugin.log"), "", bin, nil, procs.Env(all...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("%s log (last lines):\n%s", name, proc.Tail(30))
		}
	})
	probe := exec.Command(bin, "probe", "-endpoint", endpoint, "-wait", "30s")
	probe.Env = procs.Env()
	if out, err := probe.CombinedOutput(); err != nil {
		t.Fatalf("%s is not healthy: %v: %s\n%s", name, err, out, proc.Tail(20))
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &plugin{
		proc:    proc,
		v1:      v1beta1.NewKeyManagementServiceClient(conn),
		v2:      kmsapi.NewKeyManagementServiceClient(conn),
		metrics: "http://" + healthAddr + "/metrics",
	}
}

// counter is the sum of a metric's samples in the plugin's /metrics (0 if
// it has none yet).
func (p *plugin) counter(name string) (float64, error) {
	res, err := http.Get(p.metrics)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p.metrics, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p.metrics, err)
	}
	var sum float64
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum, nil
}

// hasSetting reports whether the plugin binary knows a VAULT_KMS_* setting
// (it lists all of them in --help), for rows whose behaviour depends on a
// setting that may not exist yet.
func hasSetting(t *testing.T, name string) bool {
	t.Helper()
	cmd := exec.Command(pluginBin(t), "--help")
	cmd.Env = procs.Env()
	out, _ := cmd.CombinedOutput()
	return strings.Contains(string(out), name)
}

// callCtx is a caller's context with kube-apiserver's KMS deadline.
func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}
