package vault

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/vault/api"
)

// tlsFiles are the PEM files of the TLS connections to Vault, named by
// VAULT_CACERT (or VAULT_CAPATH) and VAULT_CLIENT_CERT with
// VAULT_CLIENT_KEY. vault/api reads them once, at start-up; certificates
// rotate by a new file renamed over the old one (cert-manager, a node's
// renewal job), so these are read again whenever they change.
type tlsFiles struct {
	caFile, caPath    string // at most one is set, as vault/api picks them
	certFile, keyFile string

	tried []fileStamp // of the files as they were when last read
}

// tlsMaterial is what one set of the files holds.
type tlsMaterial struct {
	roots *x509.CertPool   // nil: vault/api's own (VAULT_CACERT_BYTES or the system's)
	cert  *tls.Certificate // nil: no client certificate
}

// tlsFilesFromEnv names the files the way vault/api's ReadEnvironment does:
// VAULT_CACERT wins over VAULT_CACERT_BYTES, which wins over VAULT_CAPATH.
func tlsFilesFromEnv() (*tlsFiles, error) {
	f := &tlsFiles{
		caFile:   os.Getenv(api.EnvVaultCACert),
		certFile: os.Getenv(api.EnvVaultClientCert),
		keyFile:  os.Getenv(api.EnvVaultClientKey),
	}
	if f.caFile == "" && os.Getenv(api.EnvVaultCACertBytes) == "" {
		f.caPath = os.Getenv(api.EnvVaultCAPath)
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return nil, errors.New("VAULT_CLIENT_CERT and VAULT_CLIENT_KEY go together: set both (cert auth, or a Vault that asks for client certificates) or neither")
	}
	return f, nil
}

// watched reports whether there is any file to watch.
func (f *tlsFiles) watched() bool {
	return f.caFile != "" || f.caPath != "" || f.certFile != ""
}

// refresh reads the files again if they changed since they were last read.
// It returns the new material and true, or false when nothing changed or
// the change cannot be used yet (a pair half-written, a file being
// replaced): the error then says which file, and the caller keeps what it
// has. A file that changes again is read again.
func (f *tlsFiles) refresh() (tlsMaterial, bool, error) {
	now := f.stamps()
	if sameStamps(now, f.tried) {
		return tlsMaterial{}, false, nil
	}
	m, err := f.loadAsOf(now)
	if err != nil {
		return tlsMaterial{}, false, err
	}
	return m, true, nil
}

// loadAsOf reads the files and remembers them as they were at stamps,
// taken before the read: a change during the read is seen next time.
func (f *tlsFiles) loadAsOf(stamps []fileStamp) (tlsMaterial, error) {
	f.tried = stamps
	return f.load()
}

// load reads and checks every file.
func (f *tlsFiles) load() (tlsMaterial, error) {
	var m tlsMaterial
	var err error
	switch {
	case f.caFile != "":
		m.roots = x509.NewCertPool()
		if err = appendPEMFile(m.roots, f.caFile); err != nil {
			return m, fmt.Errorf("VAULT_CACERT=%s: %w", f.caFile, err)
		}
	case f.caPath != "":
		if m.roots, err = loadCADir(f.caPath); err != nil {
			return m, fmt.Errorf("VAULT_CAPATH=%s: %w", f.caPath, err)
		}
	}
	if f.certFile != "" {
		cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			// The error says what is wrong (unreadable, no PEM, the key
			// does not match the certificate) and never quotes the key.
			return m, fmt.Errorf("client certificate VAULT_CLIENT_CERT=%s with key VAULT_CLIENT_KEY=%s: %w", f.certFile, f.keyFile, err)
		}
		m.cert = &cert
	}
	return m, nil
}

func appendPEMFile(pool *x509.CertPool, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !pool.AppendCertsFromPEM(b) {
		return fmt.Errorf("%s holds no PEM certificate: give a file of \"-----BEGIN CERTIFICATE-----\" blocks", path)
	}
	return nil
}

// loadCADir reads every file below dir, each of which must hold a PEM
// certificate, as vault/api does with VAULT_CAPATH.
func loadCADir(dir string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return appendPEMFile(pool, path)
	})
	return pool, err
}

// fileStamp identifies a file's content without reading it: a file renamed
// over another is another inode, and a file written in place changes its
// modification time or size.
type fileStamp struct {
	path string
	info os.FileInfo // nil if missing
}

func (f *tlsFiles) stamps() []fileStamp {
	var out []fileStamp
	for _, p := range []string{f.caFile, f.certFile, f.keyFile} {
		if p != "" {
			out = append(out, stampOf(p))
		}
	}
	if f.caPath != "" {
		out = append(out, stampOf(f.caPath))
		_ = filepath.WalkDir(f.caPath, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out = append(out, stampOf(path))
			}
			return nil
		})
	}
	return out
}

func stampOf(path string) fileStamp {
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{path: path}
	}
	return fileStamp{path: path, info: info}
}

func sameStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.path != y.path || (x.info == nil) != (y.info == nil) {
			return false
		}
		if x.info != nil && (!os.SameFile(x.info, y.info) || !x.info.ModTime().Equal(y.info.ModTime()) || x.info.Size() != y.info.Size()) {
			return false
		}
	}
	return true
}
