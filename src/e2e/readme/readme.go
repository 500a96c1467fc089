// Package readme gives tests the EncryptionConfiguration exactly as the
// README tells users to write it, so a test of "the README's configuration"
// fails when the README changes into something that does not work.
package readme

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

// Endpoint is the socket the README's EncryptionConfiguration names, a
// path on the control-plane node.
const Endpoint = "unix:///var/run/kmsplugin/socket.sock"

var block = regexp.MustCompile("(?s)```yaml\n(apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n.*?)```")

// Root is the repository's top directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// EncryptionConfig is the README's EncryptionConfiguration (KMS v2),
// verbatim.
func EncryptionConfig() (string, error) {
	b, err := os.ReadFile(filepath.Join(Root(), "README.md"))
	if err != nil {
		return "", err
	}
	m := block.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("README.md has no EncryptionConfiguration yaml block")
	}
	return string(m[1]), nil
}

// WithSocket points cfg's endpoint at socket (a path on this machine).
func WithSocket(cfg, socket string) (string, error) {
	if n := strings.Count(cfg, Endpoint); n != 1 {
		return "", fmt.Errorf("the EncryptionConfiguration names %s %d times, want once:\n%s", Endpoint, n, cfg)
	}
	return strings.Replace(cfg, Endpoint, "unix://"+socket, 1), nil
}

// V1Of applies the README's recipe for KMS v1 to its v2 configuration:
// "drop apiVersion: v2 and add cachesize: 1000".
func V1Of(v2 string) (string, error) {
	const api, timeout = "          apiVersion: v2\n", "          timeout: 3s\n"
	if strings.Count(v2, api) != 1 || strings.Count(v2, timeout) != 1 {
		return "", fmt.Errorf("unexpected KMS v2 provider layout:\n%s", v2)
	}
	v1 := strings.Replace(v2, api, "", 1)
	return strings.Replace(v1, timeout, "          cachesize: 1000\n"+timeout, 1), nil
}
