package apiserver

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"path/filepath"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// provider is one EncryptionConfiguration for Secrets that an apiserver
// is (re)started with.
type provider struct {
	name  string   // as the report shows it
	yaml  string   // the provider's entry under providers:
	flags []string // extra apiserver flags it needs
}

const (
	provIdentity = "identity"
	provLocal    = "secretbox (local key)"
	provV2       = "KMS v2"
	provV1On     = "KMS v1, group commit on"
	provV1Off    = "KMS v1, group commit off"
)

// kmsV1Flags turns the deprecated KMS v1 API back on: kube-apiserver
// refuses a v1 provider without it.
var kmsV1Flags = []string{"--feature-gates=KMSv1=true"}

// providers are the configurations measured, the ceiling first. The v1
// entries share their name (it is part of what they store), so that
// Secrets written through one plugin are read through the other.
func providers(v2Socket, v1OnSocket, v1OffSocket string) ([]provider, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("make the secretbox key: %w", err)
	}
	kms := func(version, socket string) string {
		return fmt.Sprintf("kms:\n          apiVersion: %s\n          name: vault\n          endpoint: unix://%s\n          timeout: 3s", version, socket)
	}
	return []provider{
		{name: provIdentity, yaml: "identity: {}"},
		{name: provLocal, yaml: "secretbox:\n          keys:\n            - name: local\n              secret: " + base64.StdEncoding.EncodeToString(key)},
		{name: provV2, yaml: kms("v2", v2Socket)},
		{name: provV1On, yaml: kms("v1", v1OnSocket), flags: kmsV1Flags},
		{name: provV1Off, yaml: kms("v1", v1OffSocket), flags: kmsV1Flags},
	}, nil
}

// write writes p's EncryptionConfiguration into dir and returns its path.
func (p provider) write(t testvault.TB, dir, file string) string {
	return bed.WriteFile(t, filepath.Join(dir, file), fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - %s
`, p.yaml))
}
