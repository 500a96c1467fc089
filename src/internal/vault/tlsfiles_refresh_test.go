package vault

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned makes a client certificate and its key as PEM.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	return NewTestCA(t, name+"-ca").Issue(t, name, false)
}

func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// A change that cannot be used yet is refused with the setting and file
// named, never the key's content, and the next complete change is taken.
func TestRefreshKeepsTheOldFilesUntilTheNewOnesWork(t *testing.T) {
	oldCert, oldKey := selfSigned(t, "old")
	newCert, newKey := selfSigned(t, "new")
	for _, tc := range []struct {
		name     string
		change   func(f *tlsFiles)
		wantErr  string // "" when the change is taken
		wantName string // the client certificate's name after the change
	}{
		{"nothing changed", func(*tlsFiles) {}, "", ""},
		{"certificate renamed over, key not yet", func(f *tlsFiles) { replaceFile(t, f.certFile, newCert) },
			"VAULT_CLIENT_CERT=", ""},
		{"key renamed over, certificate not yet", func(f *tlsFiles) { replaceFile(t, f.keyFile, newKey) },
			"VAULT_CLIENT_KEY=", ""},
		{"key half written", func(f *tlsFiles) { replaceFile(t, f.keyFile, newKey[:len(newKey)/2]) },
			"VAULT_CLIENT_KEY=", ""},
		{"key removed", func(f *tlsFiles) { os.Remove(f.keyFile) }, "no such file", ""},
		{"CA file empty", func(f *tlsFiles) { replaceFile(t, f.caFile, nil) }, "VAULT_CACERT=", ""},
		{"CA file not PEM", func(f *tlsFiles) { replaceFile(t, f.caFile, []byte("not a certificate")) }, "holds no PEM certificate", ""},
		{"both renamed over", func(f *tlsFiles) { replaceFile(t, f.certFile, newCert); replaceFile(t, f.keyFile, newKey) }, "", "new"},
		{"CA renamed over", func(f *tlsFiles) { replaceFile(t, f.caFile, newCert) }, "", "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := &tlsFiles{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key")}
			replaceFile(t, f.caFile, oldCert)
			replaceFile(t, f.certFile, oldCert)
			replaceFile(t, f.keyFile, oldKey)
			if _, err := f.loadAsOf(f.stamps()); err != nil {
				t.Fatal(err)
			}
			tc.change(f)
			m, changed, err := f.refresh()
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || changed {
					t.Fatalf("refresh = changed %v, %v; want unchanged and an error with %q", changed, err, tc.wantErr)
				}
				for _, secret := range [][]byte{oldKey, newKey} {
					if line := strings.Split(string(secret), "\n")[1]; strings.Contains(err.Error(), line) {
						t.Fatalf("the error quotes a private key: %v", err)
					}
				}
				// Seen once: the same files are not reported again.
				if _, again, err := f.refresh(); again || err != nil {
					t.Fatalf("second refresh of the same files = %v, %v; want nothing", again, err)
				}
			case tc.wantName == "":
				if changed || err != nil {
					t.Fatalf("refresh = %v, %v; want no change", changed, err)
				}
			default:
				if !changed || err != nil {
					t.Fatalf("refresh = %v, %v; want the new files", changed, err)
				}
				if got := m.cert.Leaf.Subject.CommonName; got != tc.wantName {
					t.Fatalf("client certificate %q, want %q", got, tc.wantName)
				}
				if m.roots == nil {
					t.Fatal("no CA pool from VAULT_CACERT")
				}
			}
		})
	}
}

// VAULT_CAPATH is a directory of CA files; one added to it is a change.
func TestRefreshSeesAFileAddedToTheCADirectory(t *testing.T) {
	dir := t.TempDir()
	first, _ := selfSigned(t, "first")
	replaceFile(t, filepath.Join(dir, "first.pem"), first)
	f := &tlsFiles{caPath: dir}
	m, err := f.loadAsOf(f.stamps())
	if err != nil {
		t.Fatal(err)
	}
	second, _ := selfSigned(t, "second")
	replaceFile(t, filepath.Join(dir, "second.pem"), second)
	m2, changed, err := f.refresh()
	if !changed || err != nil {
		t.Fatalf("refresh = %v, %v; want the new directory", changed, err)
	}
	if m2.roots.Equal(m.roots) {
		t.Fatal("the CA pool did not change")
	}
}

// Unusable TLS files stop the start-up with the setting named.
func TestNewClientRefusesUnusableTLSFiles(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := selfSigned(t, "a")
	_, keyB := selfSigned(t, "b")
	files := map[string][]byte{"a.crt": certA, "a.key": keyA, "b.key": keyB, "junk.pem": []byte("junk")}
	for name, b := range files {
		replaceFile(t, filepath.Join(dir, name), b)
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"certificate without key", map[string]string{"VAULT_CLIENT_CERT": "a.crt"}, "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY go together"},
		{"key without certificate", map[string]string{"VAULT_CLIENT_KEY": "a.key"}, "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY go together"},
		{"key of another certificate", map[string]string{"VAULT_CLIENT_CERT": "a.crt", "VAULT_CLIENT_KEY": "b.key"}, "VAULT_CLIENT_KEY=" + filepath.Join(dir, "b.key")},
		{"CA file without PEM", map[string]string{"VAULT_CACERT": "junk.pem"}, "VAULT_CACERT=" + filepath.Join(dir, "junk.pem")},
		{"CA file missing", map[string]string{"VAULT_CACERT": "none.pem"}, "VAULT_CACERT=" + filepath.Join(dir, "none.pem")},
		{"CA directory with a file without PEM", map[string]string{"VAULT_CAPATH": "."}, "VAULT_CAPATH=" + dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []string{"VAULT_CACERT", "VAULT_CAPATH", "VAULT_CACERT_BYTES", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"} {
				t.Setenv(v, "")
			}
			t.Setenv("VAULT_ADDR", "https://127.0.0.1:8200")
			for k, v := range tc.env {
				t.Setenv(k, filepath.Join(dir, v))
			}
			_, err := NewClient(time.Second, 1, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewClient = %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}
