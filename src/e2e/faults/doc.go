// Package faults is the fault suite behind `make faults`: it runs the
// plugin binary (bin/vault-kms-plugin) as kube-apiserver does, against
// real Vault servers on 127.0.0.1 (a dev server, a raft HA cluster, TLS),
// injects faults (a killed active node, blackholes, latency, a missing
// policy path, rate limits, listener limits, a lagging key snapshot, an
// outage) through src/e2e/internal/faultproxy and Vault's own settings,
// and writes what it measured against each target to docs/reliability.md.
// A target not met fails the suite.
//
//	cd src/e2e && go test -count=1 -v ./faults -args -out ../../docs/reliability.md   (what `make faults` runs)
package faults
