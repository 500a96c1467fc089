// Package chart holds the tests of the Helm chart in charts/vault-kms-plugin.
// They render the chart with Helm's own library, as `helm install` would,
// decode every object strictly into its Kubernetes API type, and check that
// the environment the chart gives the plugin is one the plugin's own
// configuration code accepts. Refresh the golden files with
//
//	go test ./src/internal/chart -update
package chart
