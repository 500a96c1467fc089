package config

import (
	"fmt"
	"path"
	"strings"
)

// SharedHostDirs are directories of a node that hold far more than one
// credential: the chart mounts the directory of a token or secret_id file
// whole (so that a file replaced by rename is seen), and a pod that mounts
// one of these sees the node's runtime socket, its PKI or every pod's
// volumes. The chart's _validate.tpl keeps the same list; a chart test
// renders every entry and expects the refusal.
var SharedHostDirs = []string{
	"/", "/bin", "/boot", "/etc", "/etc/cni", "/etc/kubernetes", "/etc/kubernetes/manifests",
	"/etc/rancher", "/etc/ssl", "/etc/ssl/certs", "/home", "/lib", "/opt", "/root",
	"/run", "/sbin", "/srv", "/tmp", "/usr", "/var", "/var/lib", "/var/lib/docker",
	"/var/lib/rancher", "/var/log", "/var/run", "/var/tmp",
}

// SharedHostTrees are directories that neither they nor any directory
// below them may be mounted: kernel interfaces, the container runtime, the
// kubelet's pods and the cluster's keys.
var SharedHostTrees = []string{
	"/dev", "/proc", "/sys",
	"/etc/kubernetes/pki", "/var/lib/etcd", "/var/lib/kubelet", "/var/lib/containerd",
	"/run/containerd", "/var/run/containerd", "/run/crio", "/var/run/crio",
	"/run/k3s", "/var/run/k3s",
}

// checkDedicatedDir refuses a directory that is shared with the node's
// other secrets. setting names the variable the directory comes from.
func checkDedicatedDir(setting, dir string) error {
	clean := path.Clean("/" + dir)
	shared := false
	for _, d := range SharedHostDirs {
		shared = shared || clean == d
	}
	for _, tree := range SharedHostTrees {
		shared = shared || clean == tree || strings.HasPrefix(clean, tree+"/")
	}
	if !shared {
		return nil
	}
	return fmt.Errorf("%s: the directory %s is shared with the node's other files (the chart mounts it whole into a root container): "+
		"put the file in a directory of its own, e.g. /var/lib/vault-kms-plugin/", setting, clean)
}
