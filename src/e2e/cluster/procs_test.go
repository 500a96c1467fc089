package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// repoRoot is the repository's root.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := procs.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// testbedBin is bin/NAME of the test bed (TESTBED_BIN overrides bin/, as
// in scripts/testbed.sh).
func testbedBin(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("TESTBED_BIN")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run 'make e2e' (or scripts/testbed.sh --adopt vault etcd kube-apiserver kubectl) first", p)
	}
	return p
}

// buildPlugin builds the plugin binary in the product's own module.
func buildPlugin(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "vault-kms-plugin")
	cmd := exec.Command("go", "build", "-C", repoRoot(t), "-o", bin, "./src/cmd/vault-kms-plugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	return bin
}

// freePort is a free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	return testvault.FreePort(t)
}

// proc is a server process the test started (a procs.Process), with its
// Wait error as a field.
type proc struct {
	p    *procs.Process
	err  error         // of Wait, valid once done is closed
	done chan struct{} // closed once err is set
}

// startProc starts bin with args and env (nil: the test's environment).
// The process dies with the test process (Pdeathsig), even if the test
// binary is killed by a timeout before its cleanups run.
func startProc(t testing.TB, name, logPath, dir, bin string, args, env []string) *proc {
	t.Helper()
	p, err := procs.Start(name, logPath, dir, bin, args, env)
	if err != nil {
		t.Fatal(err)
	}
	w := &proc{p: p, done: make(chan struct{})}
	go func() {
		<-p.Done()
		w.err = p.Err()
		close(w.done)
	}()
	return w
}

func (p *proc) pid() int { return p.p.PID() }

// running reports whether the process has not exited; once it has, err is
// set.
func (p *proc) running() bool {
	if p.p.Running() {
		return true
	}
	<-p.done
	return false
}

// stop sends sig, waits up to grace for the exit, then kills. It returns
// how long the process took to exit and its Wait error.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) (time.Duration, error) {
	d, err := p.p.Stop(sig, grace)
	<-p.done
	return d, err
}

// exitCode is the exit status of a stopped process (-1 if killed by a signal).
func (p *proc) exitCode() int { return p.p.ExitCode() }

// pki holds the certificates and keys of the control plane, made by the
// test: a CA, the apiserver's serving certificate (127.0.0.1), and the
// service-account signing key pair.
type pki struct {
	caFile, caPEM          string
	servingCert, servingKy string
	saPub, saKey           string
	adminToken             string
	tokenFile              string // the apiserver's --token-auth-file
}

func newPKI(t testing.TB, dir string) *pki {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		must(os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	newKey := func() (*ecdsa.PrivateKey, []byte) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		der, err := x509.MarshalPKCS8PrivateKey(k)
		must(err)
		return k, der
	}
	now := time.Now()
	caKey, _ := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vault-kms-e2e-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	caCert, err := x509.ParseCertificate(caDER)
	must(err)

	srvKey, srvKeyDER := newKey()
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(48 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost", "kubernetes.default.svc"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	must(err)

	saKey, saKeyDER := newKey()
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	must(err)

	tok := make([]byte, 24)
	_, err = rand.Read(tok)
	must(err)
	p := &pki{
		caFile:      writePEM("ca.crt", "CERTIFICATE", caDER),
		servingCert: writePEM("serving.crt", "CERTIFICATE", srvDER),
		servingKy:   writePEM("serving.key", "PRIVATE KEY", srvKeyDER),
		saPub:       writePEM("sa.pub", "PUBLIC KEY", saPubDER),
		saKey:       writePEM("sa.key", "PRIVATE KEY", saKeyDER),
		adminToken:  hex.EncodeToString(tok),
		tokenFile:   filepath.Join(dir, "tokens.csv"),
	}
	p.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	// token,user,uid,"group1,group2"
	must(os.WriteFile(p.tokenFile, []byte(p.adminToken+`,e2e-admin,e2e-admin,"system:masters"`+"\n"), 0o600))
	return p
}
