package cluster

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeEndpoint is the socket the README's EncryptionConfiguration names,
// a path on the control-plane node.
const readmeEndpoint = "unix:///var/run/kmsplugin/socket.sock"

// readmeEncryptionConfig is the EncryptionConfiguration of the README
// ("Point kube-apiserver at the socket"), verbatim.
func readmeEncryptionConfig(t testing.TB) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no EncryptionConfiguration yaml block")
	}
	return string(m[1])
}

// onNode rewrites the README's endpoint to the socket's place on this
// machine's stand-in for the node's filesystem.
func onNode(t testing.TB, cfg, hostRoot string) string {
	t.Helper()
	if n := strings.Count(cfg, readmeEndpoint); n != 1 {
		t.Fatalf("the EncryptionConfiguration names %s %d times, want once:\n%s", readmeEndpoint, n, cfg)
	}
	return strings.Replace(cfg, readmeEndpoint, "unix://"+filepath.Join(hostRoot, strings.TrimPrefix(readmeEndpoint, "unix://")), 1)
}

// v1Of is the README's recipe for KMS v1: "drop apiVersion: v2 and add
// cachesize: 1000".
func v1Of(t testing.TB, v2 string) string {
	t.Helper()
	const api, timeout = "          apiVersion: v2\n", "          timeout: 3s\n"
	if strings.Count(v2, api) != 1 || strings.Count(v2, timeout) != 1 {
		t.Fatalf("unexpected KMS v2 provider layout:\n%s", v2)
	}
	v1 := strings.Replace(v2, api, "", 1)
	return strings.Replace(v1, timeout, "          cachesize: 1000\n"+timeout, 1)
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
