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
	"path/filepath"
	"testing"
	"time"
)

// pki holds the certificates and keys of the control plane, made by the
// test: a CA, the apiserver's serving certificate (127.0.0.1), and the
// service-account signing key pair. issue makes more from the same CA: the
// node's client certificates, Vault's serving certificate.
type pki struct {
	dir                    string
	caFile, caPEM          string
	servingCert, servingKy string
	saPub, saKey           string
	adminToken             string
	tokenFile              string // the apiserver's --token-auth-file

	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

func newPKI(t testing.TB, dir string) *pki {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: dir, tokenFile: filepath.Join(dir, "tokens.csv")}
	caKey, _ := newECKey(t)
	now := time.Now()
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
	must(t, err)
	p.ca, err = x509.ParseCertificate(caDER)
	must(t, err)
	p.caKey, p.serial = caKey, 1
	p.caFile = p.writePEM(t, "ca.crt", "CERTIFICATE", caDER)
	p.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))

	p.servingCert, p.servingKy = p.issue(t, "serving", servingTemplate("kube-apiserver", "localhost", "kubernetes.default.svc"))

	saKey, saKeyDER := newECKey(t)
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	must(t, err)
	p.saPub = p.writePEM(t, "sa.pub", "PUBLIC KEY", saPubDER)
	p.saKey = p.writePEM(t, "sa.key", "PRIVATE KEY", saKeyDER)

	tok := make([]byte, 24)
	_, err = rand.Read(tok)
	must(t, err)
	p.adminToken = hex.EncodeToString(tok)
	// token,user,uid,"group1,group2"
	must(t, os.WriteFile(p.tokenFile, []byte(p.adminToken+`,e2e-admin,e2e-admin,"system:masters"`+"\n"), 0o600))
	return p
}

// issue signs tmpl (subject, names, extended key usages) with the CA for 48
// hours and writes NAME.crt and NAME.key; it returns their paths.
func (p *pki) issue(t testing.TB, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, keyDER := newECKey(t)
	p.serial++
	tmpl.SerialNumber = big.NewInt(p.serial)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(48 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	must(t, err)
	return p.writePEM(t, name+".crt", "CERTIFICATE", der), p.writePEM(t, name+".key", "PRIVATE KEY", keyDER)
}

// servingTemplate is a serving certificate for cn, valid for 127.0.0.1 and
// the DNS names.
func servingTemplate(cn string, dnsNames ...string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    append([]string{cn}, dnsNames...),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

// clientCert is a client certificate for user cn in groups orgs, as the
// apiserver's --client-ca-file authenticates it.
func (p *pki) clientCert(t testing.TB, name, cn string, orgs ...string) (certFile, keyFile string) {
	t.Helper()
	return p.issue(t, name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (p *pki) writePEM(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

func newECKey(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	must(t, err)
	return k, der
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
