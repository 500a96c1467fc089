// Command kubectl is the Kubernetes CLI used by the real-Kubernetes test
// bed. It is built by scripts/testbed.sh into bin/kubectl.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(cli.Run(cmd.NewDefaultKubectlCommand()))
}
