// Package cluster is the end-to-end test on a real control plane: etcd,
// kube-apiserver and Vault, all on 127.0.0.1, and the plugin binary started
// exactly as the Helm chart's DaemonSet would start it (command, arguments,
// environment, mounted files, projected service-account token).
//
// It needs the test bed's binaries in bin/ (vault, etcd, kube-apiserver,
// kubectl, and kube-controller-manager for the StorageVersionMigration
// stage): `make e2e` builds them (cached) and runs it. It takes several
// minutes, most of it waiting on the apiserver's fixed KMS v2
// Status interval (a minute while healthy). docs/testing.md lists what each
// stage asserts.
//
// Set VAULT_KMS_E2E_KEEP=1 to keep the logs of a passing run; the logs of a
// failing run are always kept, in /tmp/vault-kms-e2e-<timestamp>.
package cluster
