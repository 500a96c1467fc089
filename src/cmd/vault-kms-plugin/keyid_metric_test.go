package main

import (
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/metrics"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// The binary exports the key_id Status reports as key_id_info, hashed, and
// a rotation replaces the series: one series per process, so that
// count by (key_id_hash) across nodes counts key_ids, not history.
func TestKeyIDInfoFollowsStatusAcrossARotation(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	sock, base := startWithHealth(t, v, nil)

	onlySeries := func() string {
		t.Helper()
		f, ok := scrape(t, base)["vault_kms_plugin_key_id_info"]
		if !ok {
			return ""
		}
		if len(f.Metric) != 1 {
			t.Fatalf("key_id_info has %d series, want 1: %v", len(f.Metric), f.Metric)
		}
		m := f.Metric[0]
		if len(m.Label) != 1 || m.Label[0].GetName() != "key_id_hash" || m.Gauge.GetValue() != 1 {
			t.Fatalf("key_id_info series %v, want {key_id_hash=...} 1", m)
		}
		return m.Label[0].GetValue()
	}
	waitFor := func(keyID string) {
		t.Helper()
		want := metrics.KeyIDHash(keyID)
		deadline := time.Now().Add(10 * time.Second)
		for got := onlySeries(); got != want; got = onlySeries() {
			if time.Now().After(deadline) {
				t.Fatalf("key_id_info{key_id_hash=%q}, want %q, the hash of Status's key_id", got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	first := status(t, sock).KeyId
	waitFor(first)
	v.Rotate("transit", "kube")
	deadline := time.Now().Add(10 * time.Second)
	rotated := status(t, sock).KeyId
	for ; rotated == first; rotated = status(t, sock).KeyId {
		if time.Now().After(deadline) {
			t.Fatal("Status kept the key_id after a rotation")
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(rotated)
	if metrics.KeyIDHash(rotated) == metrics.KeyIDHash(first) {
		t.Fatal("the rotation left key_id_hash unchanged")
	}
}
