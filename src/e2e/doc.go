// Package e2e drives the plugin with Kubernetes' own code: the apiserver's
// encryptionconfig loader here, and a real kube-apiserver with etcd in the
// end-to-end tests. It is its own module so that the product's go.mod does
// not carry k8s.io/apiserver.
package e2e
