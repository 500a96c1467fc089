package server_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/server"
)

// barrier answers Encrypt only once n calls are inside it at the same time.
type barrier struct {
	n       int32
	arrived atomic.Int32
	all     chan struct{}
}

func (b *barrier) Encrypt(ctx context.Context, _ string, pt []byte) (*kms.EncryptResponse, error) {
	if b.arrived.Add(1) == b.n {
		close(b.all)
	}
	select {
	case <-b.all:
		return &kms.EncryptResponse{Ciphertext: pt, KeyID: "k"}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *barrier) Decrypt(context.Context, string, *kms.DecryptRequest) ([]byte, error) {
	return nil, nil
}

func (b *barrier) Status(context.Context) (*kms.StatusResponse, error) {
	return &kms.StatusResponse{Version: "v2", Healthz: "ok", KeyID: "k"}, nil
}

// Calls beyond the stream workers must not queue behind them: a handler
// waits on Vault, and the apiserver's calls must all be in flight at once
// for group commit to batch them. 64 calls that each wait for all 64 only
// finish if the server runs them concurrently.
func TestCallsBeyondTheWorkersRunConcurrently(t *testing.T) {
	const calls = 64
	b := &barrier{n: calls, all: make(chan struct{})}
	conn := server.ServeCore(t, b, server.DefaultMaxInflight)
	c := kmsapi.NewKeyManagementServiceClient(conn)
	// Generous: it only ends a test that would otherwise hang.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for range calls {
		wg.Go(func() {
			if _, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "u", Plaintext: []byte("dek")}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%d of %d calls were in the handler together; a call failed: %v", b.arrived.Load(), calls, err)
	}
}
