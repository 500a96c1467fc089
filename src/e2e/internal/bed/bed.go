// Package bed is the test bed of the end-to-end tests and the demo: a
// certificate authority, etcd, kube-apiserver and Vault on 127.0.0.1, the
// plugin binary, and reads of what etcd stores. It works on a
// testvault.TB, so that a test or a program (make demo) can own it: every
// process it starts stops when its owner's cleanups run.
package bed

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// Bed is the control plane: what runs, where, and how to reach it.
type Bed struct {
	Owner  testvault.TB // owns the processes: they live as long as it
	Dir    string       // work directory (short: a socket path in it must fit in 108 bytes)
	LogDir string
	PKI    *PKI

	EtcdBin, APIServerBin, KubectlBin, PluginBin string

	Vault *testvault.Server

	Etcd     *procs.Process
	EtcdPort int

	APIServer     *procs.Process
	APIServerPort int
	APIServerArgs []string // flags of the running apiserver (for the logs)
	Kubeconfig    string
	// ReadyPoll is how often StartAPIServer polls /readyz (0: every
	// 250ms); a start-up timed to the apiserver's readiness polls faster.
	ReadyPoll time.Duration
	Client    *kubernetes.Clientset
	HTTPS     *http.Client // verified TLS to the apiserver, admin token added
}

// New is a bed in dir, owned by owner, with the binaries of the test bed
// (bin/etcd, bin/kube-apiserver, bin/kubectl) and certificates made in
// dir/pki. Nothing runs yet.
func New(owner testvault.TB, dir string) *Bed {
	owner.Helper()
	b := &Bed{Owner: owner, Dir: dir, LogDir: filepath.Join(dir, "logs")}
	if err := os.MkdirAll(b.LogDir, 0o755); err != nil {
		owner.Fatal(err)
	}
	b.EtcdBin, b.APIServerBin, b.KubectlBin = Bin(owner, "etcd"), Bin(owner, "kube-apiserver"), Bin(owner, "kubectl")
	testvault.Bin(owner)
	b.PKI = NewPKI(owner, filepath.Join(dir, "pki"))
	return b
}

// Bin is bin/NAME of the test bed (TESTBED_BIN overrides bin/, as in
// scripts/testbed.sh).
func Bin(t testvault.TB, name string) string {
	t.Helper()
	dir := os.Getenv("TESTBED_BIN")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run 'make e2e' (or scripts/testbed.sh --adopt vault etcd kube-apiserver kubectl) first", p)
	}
	return p
}

// RepoRoot is the repository's root.
func RepoRoot(t testvault.TB) string {
	t.Helper()
	root, err := procs.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// BuildPlugin builds the plugin binary in the product's own module, into
// dir.
func BuildPlugin(t testvault.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "vault-kms-plugin")
	cmd := exec.Command("go", "build", "-C", RepoRoot(t), "-o", bin, "./src/cmd/vault-kms-plugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	return bin
}

// StartProc starts bin with args in dir and env (nil: this process's
// environment), its output appended to logPath. The process dies with this
// one (Pdeathsig), even if this one is killed before its cleanups run; the
// caller stops it.
func StartProc(t testvault.TB, name, logPath, dir, bin string, args, env []string) *procs.Process {
	t.Helper()
	p, err := procs.Start(name, logPath, dir, bin, args, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// WaitFor calls f until it returns nil, failing t after timeout with f's
// last error. It returns how long that took.
func WaitFor(t testvault.TB, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	return WaitEvery(t, timeout, 250*time.Millisecond, what, f)
}

// WaitEvery is WaitFor with a chosen interval, for checks that write.
func WaitEvery(t testvault.TB, timeout, every time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	d, err := procs.WaitFor(context.Background(), timeout, every, what, f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// WriteFile writes content to path (mode 0600) and returns path.
func WriteFile(t testvault.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// HTTPGet GETs url (plain http on 127.0.0.1: the plugin's health port).
func HTTPGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// must fails t on err.
func must(t testvault.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// exited is the failure message of a server that stopped while the bed
// waited for it.
func exited(p *procs.Process, lines int) string {
	status := "exit status 0"
	if err := p.Err(); err != nil {
		status = err.Error()
	}
	return fmt.Sprintf("%s exited (%s); last lines of its log %s:\n%s", p.Name, status, p.LogPath, p.Tail(lines))
}
