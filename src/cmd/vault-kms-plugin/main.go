// Command vault-kms-plugin is a Kubernetes KMS plugin (v2 and v1beta1) that
// encrypts with HashiCorp Vault's transit engine.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(args) > 0 {
			fmt.Fprintf(stderr, "vault-kms-plugin: serve takes no arguments (got %q): settings come from the environment, see --help\n", args)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		cfg, err := config.Load()
		if err != nil {
			fmt.Fprintf(stderr, "vault-kms-plugin: configuration: %v\nRun 'vault-kms-plugin --help' for every setting.\n", err)
			return 2
		}
		if err := serve(ctx, cfg, stderr); err != nil {
			fmt.Fprintf(stderr, "vault-kms-plugin: %v\n", err)
			return 1
		}
		return 0
	case "probe":
		return probe(args, stdout, stderr)
	case "doctor":
		return runDoctor(args, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version.Version)
		return 0
	case "help", "--help", "-h":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "vault-kms-plugin: unknown command %q\n\n", cmd)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `vault-kms-plugin %s: Kubernetes KMS plugin (v2 and v1beta1) on Vault transit.

Usage:
  vault-kms-plugin [serve]   serve the KMS API on VAULT_KMS_LISTEN
  vault-kms-plugin probe     call the plugin's Status on a socket (see probe --help)
  vault-kms-plugin doctor    check Vault, auth, policy, keys and (-encryption-config FILE)
                             the apiserver's EncryptionConfiguration; same environment as serve
  vault-kms-plugin version   print the version

`, version.Version)
	_ = config.Usage(w)
}
