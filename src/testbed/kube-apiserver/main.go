// Command kube-apiserver is the Kubernetes API server used by the
// real-Kubernetes test bed. It is built by scripts/testbed.sh into
// bin/kube-apiserver.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
