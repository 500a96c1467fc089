// Command etcd is the etcd server used by the real-Kubernetes test bed.
// It is built by scripts/testbed.sh into bin/etcd.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
