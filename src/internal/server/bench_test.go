package server_test

import (
	"context"
	"testing"

	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// BenchmarkEncryptParallel profiles the plugin's whole request path in one
// process (gRPC over a real socket, service, transit client) against a real
// Vault: go test -bench Encrypt -cpuprofile cpu.out ./src/internal/server.
// The side-by-side figures come from make bench; this is for profiles.
func BenchmarkEncryptParallel(b *testing.B) {
	v := testvault.Start(b, testvault.Options{})
	v.EnableTransit("transit", "kube")
	p := startPlugin(b, v, true, "kube")
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.v2.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: make([]byte, 32)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
