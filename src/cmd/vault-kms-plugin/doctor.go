package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/doctor"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// runDoctor checks the setup with the server's own environment.
func runDoctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	deployment := fs.String("deployment", "", "how the plugin runs: daemonset (settings from a ConfigMap) or static-pod; empty if unknown")
	encCfg := fs.String("encryption-config", "", "EncryptionConfiguration file of kube-apiserver to check against this plugin")
	procRoot := fs.String("proc", "/proc", "where to look for kube-apiserver processes: the host's /proc, e.g. /host/proc when it is mounted into a pod")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	how, err := doctor.ParseDeployment(*deployment)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(stdout, "FAIL  %-22s %v\n", "configuration", err)
		return 1
	}
	client, err := vault.NewClient(cfg.VaultTimeout, 4, nil)
	if err != nil {
		fmt.Fprintf(stdout, "FAIL  %-22s %v\n", "vault client", err)
		return 1
	}
	d := &doctor.Doctor{Cfg: cfg, Client: client, Login: loginFor(cfg, client.Token()), EncryptionConfig: *encCfg, ProcRoot: *procRoot, Deployment: how}
	if !doctor.Print(stdout, d.Run(context.Background())) {
		return 1
	}
	return 0
}
