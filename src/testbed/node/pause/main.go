// Command pause is the process of the test bed's pod sandboxes (containerd's
// sandbox_image): it holds the pod's namespaces and exits on SIGTERM or
// SIGINT, which is all the kubelet asks of it. No registry is reachable, so
// the upstream pause image cannot be pulled; this one is built from here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
