package bed

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// StartAPIServer starts kube-apiserver on etcd, with encCfg (a file, or
// "" for no encryption) and extra flags, and waits for /readyz. It
// returns how long that took.
func (b *Bed) StartAPIServer(t testvault.TB, encCfg string, extra ...string) time.Duration {
	t.Helper()
	start := time.Now()
	if b.APIServerPort == 0 {
		// Kept across restarts: Vault's kubernetes_host points at it.
		b.APIServerPort = testvault.FreePort(t)
	}
	args := []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", b.EtcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", b.APIServerPort),
		"--tls-cert-file=" + b.PKI.ServingCert,
		"--tls-private-key-file=" + b.PKI.ServingKey,
		"--token-auth-file=" + b.PKI.TokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + b.PKI.SAPub,
		"--service-account-signing-key-file=" + b.PKI.SAKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// Without it the apiserver refuses a loopback advertise address.
		"--endpoint-reconciler-type=none",
		// Logs the KMS health probes' failures (klog V(2)).
		"--v=2",
	}
	if encCfg != "" {
		args = append(args, "--encryption-provider-config="+encCfg)
	}
	// An extra --authorization-mode replaces the default one: the flag
	// refuses a mode given twice.
	if slices.ContainsFunc(extra, func(a string) bool { return strings.HasPrefix(a, "--authorization-mode=") }) {
		args = slices.DeleteFunc(args, func(a string) bool { return a == "--authorization-mode=RBAC" })
	}
	args = append(args, extra...)
	b.APIServerArgs = args
	p := StartProc(t, "kube-apiserver", filepath.Join(b.LogDir, "kube-apiserver.log"), b.Dir, b.APIServerBin, args, nil)
	b.APIServer = p
	b.Owner.Cleanup(func() { p.Stop(syscall.SIGTERM, 30*time.Second) })
	if b.Kubeconfig == "" {
		b.writeKubeconfig(t)
	}
	poll := b.ReadyPoll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	WaitEvery(t, 120*time.Second, poll, "kube-apiserver /readyz", func() error {
		if !p.Running() {
			t.Fatal(exited(p, 30))
		}
		code, body, err := b.APIGet("/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%d: %s", code, body)
		}
		return nil
	})
	return time.Since(start)
}

// StopAPIServer stops kube-apiserver as a static-pod restart does
// (SIGTERM), and returns how long it took to exit.
func (b *Bed) StopAPIServer() time.Duration {
	d, _ := b.APIServer.Stop(syscall.SIGTERM, 60*time.Second)
	return d
}

// writeKubeconfig writes the admin's kubeconfig and makes the clients.
func (b *Bed) writeKubeconfig(t testvault.TB) {
	t.Helper()
	b.Kubeconfig = WriteFile(t, filepath.Join(b.Dir, "kubeconfig"), b.KubeconfigFor("e2e-admin", "token: "+b.PKI.AdminToken))
	cfg, err := clientcmd.BuildConfigFromFlags("", b.Kubeconfig)
	must(t, err)
	cfg.Timeout = 30 * time.Second
	b.Client, err = kubernetes.NewForConfig(cfg)
	must(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(b.PKI.CAPEM))
	b.HTTPS = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
}

// KubeconfigFor is a kubeconfig for the bed's apiserver, user name
// authenticating with auth (the YAML of the user's credentials, e.g.
// "token: ..." or client-certificate and client-key lines).
func (b *Bed) KubeconfigFor(name, auth string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: %s
  user:
    %s
contexts:
- name: e2e
  context:
    cluster: e2e
    user: %s
current-context: e2e
`, b.APIServerPort, b.PKI.CAFile, name, strings.ReplaceAll(auth, "\n", "\n    "), name)
}

// APIGet GETs a path of the apiserver as the admin.
func (b *Bed) APIGet(path string) (int, string, error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d%s", b.APIServerPort, path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+b.PKI.AdminToken)
	resp, err := b.HTTPS.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// Kubectl runs bin/kubectl with the admin's kubeconfig and appends the
// command and its output to kubectl.log.
func (b *Bed) Kubectl(args ...string) (string, error) {
	cmd := exec.Command(b.KubectlBin, append([]string{"--kubeconfig", b.Kubeconfig}, args...)...)
	// Dies with its parent: a program interrupted while kubectl runs
	// leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	f, ferr := os.OpenFile(filepath.Join(b.LogDir, "kubectl.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if ferr == nil {
		fmt.Fprintf(f, "===== %s: kubectl %q: err=%v\n%s\n", time.Now().Format(time.RFC3339Nano), args, err, out)
		f.Close()
	}
	return string(out), err
}
