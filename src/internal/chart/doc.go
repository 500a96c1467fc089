// Package chart holds the tests of the Helm chart in charts/vault-kms-plugin.
// They render the chart with Helm's own library, as `helm install` would,
// decode every object strictly into its Kubernetes API type, and check that
// the environment the chart gives the plugin is one the plugin's own
// configuration code accepts. Refresh the golden files with
//
//	go test ./src/internal/chart -update
//
// The README's values table is generated from values.yaml's `# --`
// comments (valuesdoc_test.go); `make chart-docs` rewrites it, and
// TestValuesTableUpToDate fails when it is stale.
//
// They also hold what ships the chart together with the plugin: the static
// pod the chart renders, upgrades from the released charts kept in
// testdata/released, and the agreement of the image's Dockerfile, the
// Makefile, the release workflow and docs/platforms.md with the chart, go.mod
// and VERSION (the image itself is built only where Docker is).
package chart
