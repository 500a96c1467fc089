package bed

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
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// PKI holds the certificates and keys of the control plane, made by the
// bed: a CA, the apiserver's serving certificate (127.0.0.1), the
// service-account signing key pair and the admin's bearer token. Issue
// makes more from the same CA: the node's client certificates, Vault's
// serving certificate.
type PKI struct {
	Dir                     string
	CAFile, CAPEM           string
	ServingCert, ServingKey string
	SAPub, SAKey            string
	AdminToken              string
	TokenFile               string // the apiserver's --token-auth-file

	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

// NewPKI makes the CA, the apiserver's certificates and keys and the admin
// token in dir.
func NewPKI(t testvault.TB, dir string) *PKI {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o700))
	p := &PKI{Dir: dir, TokenFile: filepath.Join(dir, "tokens.csv")}
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
	p.CAFile = p.writePEM(t, "ca.crt", "CERTIFICATE", caDER)
	p.CAPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))

	p.ServingCert, p.ServingKey = p.Issue(t, "serving", ServingTemplate("kube-apiserver", "localhost", "kubernetes.default.svc"))

	saKey, saKeyDER := newECKey(t)
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	must(t, err)
	p.SAPub = p.writePEM(t, "sa.pub", "PUBLIC KEY", saPubDER)
	p.SAKey = p.writePEM(t, "sa.key", "PRIVATE KEY", saKeyDER)

	tok := make([]byte, 24)
	_, err = rand.Read(tok)
	must(t, err)
	p.AdminToken = hex.EncodeToString(tok)
	// token,user,uid,"group1,group2"
	must(t, os.WriteFile(p.TokenFile, []byte(p.AdminToken+`,e2e-admin,e2e-admin,"system:masters"`+"\n"), 0o600))
	return p
}

// Issue signs tmpl (subject, names, extended key usages) with the CA for 48
// hours and writes NAME.crt and NAME.key; it returns their paths.
func (p *PKI) Issue(t testvault.TB, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
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

// ServingTemplate is a serving certificate for cn, valid for 127.0.0.1 and
// the DNS names.
func ServingTemplate(cn string, dnsNames ...string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    append([]string{cn}, dnsNames...),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

// ClientCert is a client certificate for user cn in groups orgs, as the
// apiserver's --client-ca-file authenticates it.
func (p *PKI) ClientCert(t testvault.TB, name, cn string, orgs ...string) (certFile, keyFile string) {
	t.Helper()
	return p.Issue(t, name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (p *PKI) writePEM(t testvault.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.Dir, name)
	must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

func newECKey(t testvault.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	must(t, err)
	return k, der
}
