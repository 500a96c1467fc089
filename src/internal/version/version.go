// Package version holds the build's version, stamped by the linker:
// -ldflags "-X github.com/vault-kms-plugin/vault-kms-plugin/src/internal/version.Version=1.2.3".
package version

// Version is the plugin's release version.
var Version = "dev"
