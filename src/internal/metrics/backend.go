package metrics

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// Backend wraps a kms.Backend and counts and times its Vault requests.
func (m *Metrics) Backend(b kms.Backend) kms.Backend { return &backend{next: b, m: m} }

type backend struct {
	next kms.Backend
	m    *Metrics
}

func (b *backend) observe(op string, start time.Time, err error) {
	b.m.vaultRequests.WithLabelValues(op, outcome(err)).Inc()
	b.m.vaultLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (b *backend) Encrypt(ctx context.Context, key string, version int, pt []byte) (string, error) {
	start := time.Now()
	ct, err := b.next.Encrypt(ctx, key, version, pt)
	b.observe("encrypt", start, err)
	return ct, err
}

func (b *backend) Decrypt(ctx context.Context, key, ct string) ([]byte, error) {
	start := time.Now()
	pt, err := b.next.Decrypt(ctx, key, ct)
	b.observe("decrypt", start, err)
	return pt, err
}

func (b *backend) ReadKey(ctx context.Context, key string) (*vault.Key, error) {
	start := time.Now()
	k, err := b.next.ReadKey(ctx, key)
	b.observe("read_key", start, err)
	return k, err
}

func (b *backend) Scope(ctx context.Context) (string, error) { return b.next.Scope(ctx) }
func (b *backend) AuthErr() error                            { return b.next.AuthErr() }

// outcome is a bounded label for an error: the gRPC code it maps to, in
// snake case ("ok", "unavailable", "permission_denied", ...).
func outcome(err error) string {
	c := kms.Code(err)
	if c == codes.OK {
		return "ok"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
