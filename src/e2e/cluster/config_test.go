package cluster

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/readme"
)

// readmeEndpoint is the socket the README's EncryptionConfiguration names.
const readmeEndpoint = readme.Endpoint

// readmeEncryptionConfig is the README's EncryptionConfiguration, verbatim.
func readmeEncryptionConfig(t testing.TB) string {
	t.Helper()
	cfg, err := readme.EncryptionConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// onNode rewrites the README's endpoint to the socket's place on this
// machine's stand-in for the node's filesystem.
func onNode(t testing.TB, cfg, hostRoot string) string {
	t.Helper()
	out, err := readme.WithSocket(cfg, filepath.Join(hostRoot, strings.TrimPrefix(readmeEndpoint, "unix://")))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// v1Of is the README's recipe for KMS v1.
func v1Of(t testing.TB, v2 string) string {
	t.Helper()
	v1, err := readme.V1Of(v2)
	if err != nil {
		t.Fatal(err)
	}
	return v1
}
