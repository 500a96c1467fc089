// Package e2e drives the plugin with Kubernetes' own code: the apiserver's
// encryptionconfig loader here, and a real kube-apiserver with etcd in the
// end-to-end tests. The benchmark (bench, run by `make bench`) lives here
// too, beside the process helpers it shares with the tests. It is its own
// module so that the product's go.mod lists only what the product needs
// (no k8s.io/apiserver).
package e2e
