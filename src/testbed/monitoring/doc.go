// Package monitoring tests the chart's alert rules and Grafana dashboard
// against the plugin itself: each rule parses with Prometheus's own rule
// and PromQL parsers, and every metric and label the rules and the
// dashboard's queries name is one the real binary exports on /metrics
// while it serves a real Vault.
//
// It is a module of its own so that Prometheus, which the test needs for
// its parsers, never enters the plugin's go.mod.
package monitoring
