// Package kms is the plugin's core: the Kubernetes KMS service on Vault
// transit, its key snapshot and key_id, the ciphertext format and the
// API's limits. It speaks no gRPC: package server serves it as KMS v2 and
// v1beta1 and turns its errors into gRPC codes.
package kms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// Errors of the service's own making. The server maps them to gRPC codes
// (InvalidArgument, FailedPrecondition, Unavailable).
var (
	ErrInvalidInput     = errors.New("invalid input")
	ErrKeyNotConfigured = errors.New("key not configured")
	ErrNotReady         = errors.New("not ready")
)

// Backend is what the service needs from Vault transit.
type Backend interface {
	Encrypt(ctx context.Context, key string, version int, plaintext []byte) (string, error)
	Decrypt(ctx context.Context, key, ciphertext string) ([]byte, error)
	ReadKey(ctx context.Context, key string) (*vault.Key, error)
	Scope(ctx context.Context) (string, error)
	AuthErr() error
}

// snapshot is the encryption key version in use. Encrypt pins Vault to its
// version, so the key_id it returns is exactly the one Status reported.
type snapshot struct {
	keyID   string
	version int
	fetched time.Time
}

// StatusResponse, EncryptResponse and DecryptRequest have the fields of
// k8s.io/kms/pkg/service's types that the plugin uses; that package brings
// gRPC with it, so the server converts.

// StatusResponse is what Status vouches for: the key_id in use.
type StatusResponse struct {
	Version string
	Healthz string
	KeyID   string
}

// EncryptResponse is an encrypted DEK and the key_id it was encrypted under.
type EncryptResponse struct {
	Ciphertext []byte
	KeyID      string
}

// DecryptRequest is an encrypted DEK and, in KMS v2, the key_id the
// apiserver stored beside it.
type DecryptRequest struct {
	Ciphertext []byte
	KeyID      string
}

// Service is the KMS service, with the methods of k8s.io/kms's Service.
type Service struct {
	backend Backend
	keys    []string // keys[0] encrypts; all decrypt
	refresh time.Duration
	log     *slog.Logger

	grace       time.Duration
	tokenExpiry func() time.Time   // nil: unknown
	onKeyID     func(keyID string) // nil: nobody watches
	now         func() time.Time

	snap     atomic.Pointer[snapshot]
	lastErr  atomic.Pointer[error]     // of the latest refresh; nil pointer: none yet
	verified atomic.Pointer[time.Time] // of the latest good read; nil: none, or the key was seen bad since
	poke     chan struct{}

	flightMu sync.Mutex
	inflight *flight // the refresh running now, if any
}

// Option sets what New leaves at its default.
type Option func(*Service)

// WithStatusGrace lets Status keep reporting the last verified key_id for
// d after it while Vault is unreachable. Without it, Status fails at once.
func WithStatusGrace(d time.Duration) Option { return func(s *Service) { s.grace = d } }

// WithTokenExpiry tells the service when the Vault token expires (zero:
// unknown or never), so that a session error while the token lives counts
// as an outage rather than a dead token.
func WithTokenExpiry(f func() time.Time) Option { return func(s *Service) { s.tokenExpiry = f } }

// WithKeyIDObserver has f told each new key_id the snapshot takes, the
// first included, as the metrics export it. Snapshot reads never overlap,
// so f sees the key_ids in the order Status reports them.
func WithKeyIDObserver(f func(keyID string)) Option { return func(s *Service) { s.onKeyID = f } }

// New returns a service; Run keeps its key snapshot fresh.
func New(b Backend, keys []string, refresh time.Duration, log *slog.Logger, opts ...Option) *Service {
	s := &Service{backend: b, keys: keys, refresh: refresh, log: log, now: time.Now, poke: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// readKey reads the key and its scope into a new snapshot.
func (s *Service) readKey(ctx context.Context) error {
	scope, err := s.backend.Scope(ctx)
	if err != nil {
		return err
	}
	k, err := s.backend.ReadKey(ctx, s.keys[0])
	if err != nil {
		return err
	}
	if !k.SupportsEncryption || !k.SupportsDecryption {
		return fmt.Errorf("transit key %q of type %q cannot encrypt and decrypt: use an aes256-gcm96 key", k.Name, k.Type)
	}
	next := &snapshot{keyID: keyID(scope, k), version: k.LatestVersion, fetched: s.now()}
	prev := s.snap.Load()
	s.snap.Store(next)
	if prev == nil || prev.keyID != next.keyID {
		s.log.Info("encryption key version in use", "key", k.Name, "version", k.LatestVersion, "key_id", next.keyID)
		if s.onKeyID != nil {
			s.onKeyID(next.keyID)
		}
	}
	return nil
}

// KeyVersion is the encryption key version in use, 0 before the first read.
func (s *Service) KeyVersion() (version int, age time.Duration) {
	if snap := s.snap.Load(); snap != nil {
		return snap.version, time.Since(snap.fetched)
	}
	return 0, 0
}

// Encrypt encrypts a DEK with the snapshot's key version.
func (s *Service) Encrypt(ctx context.Context, uid string, plaintext []byte) (*EncryptResponse, error) {
	if len(plaintext) == 0 || len(plaintext) > maxPlaintextLen {
		return nil, fmt.Errorf("%w: plaintext is %d bytes; want 1 to %d", ErrInvalidInput, len(plaintext), maxPlaintextLen)
	}
	snap := s.snap.Load()
	if snap == nil {
		// Concurrent first callers share one read, each within its deadline.
		if err := s.Refresh(ctx); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotReady, err)
		}
		if snap = s.snap.Load(); snap == nil {
			return nil, fmt.Errorf("%w: key not read from Vault yet", ErrNotReady)
		}
	}
	key := s.keys[0]
	ct, err := s.backend.Encrypt(ctx, key, snap.version, plaintext)
	if err != nil {
		// The key may have been recreated with fewer versions: look again
		// now rather than at the next tick.
		select {
		case s.poke <- struct{}{}:
		default:
		}
		return nil, err
	}
	if err := checkEncrypted(key, snap.version, ct); err != nil {
		return nil, err
	}
	out := formatCiphertext(key, ct)
	if len(out) > maxCiphertextLen {
		return nil, fmt.Errorf("encrypt with key %q: ciphertext of %d bytes exceeds the KMS limit of %d", key, len(out), maxCiphertextLen)
	}
	return &EncryptResponse{Ciphertext: out, KeyID: snap.keyID}, nil
}

// Decrypt decrypts with whichever configured key the ciphertext names.
func (s *Service) Decrypt(ctx context.Context, uid string, req *DecryptRequest) ([]byte, error) {
	if len(req.Ciphertext) == 0 || len(req.Ciphertext) > maxCiphertextLen {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes; want 1 to %d", ErrInvalidInput, len(req.Ciphertext), maxCiphertextLen)
	}
	if len(req.KeyID) > maxKeyIDLen {
		return nil, fmt.Errorf("%w: key_id is %d bytes; want at most %d", ErrInvalidInput, len(req.KeyID), maxKeyIDLen)
	}
	key, ct, err := parseCiphertext(req.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if key == "" {
		return s.decryptUnnamed(ctx, ct)
	}
	if !slices.Contains(s.keys, key) {
		return nil, fmt.Errorf("%w: data was encrypted with transit key %q, which is not in VAULT_KMS_KEY_NAMES; add it to the list to read this data", ErrKeyNotConfigured, key)
	}
	return s.backend.Decrypt(ctx, key, ct)
}

// decryptUnnamed tries each configured key in turn on a ciphertext that
// does not name its key.
func (s *Service) decryptUnnamed(ctx context.Context, ct string) ([]byte, error) {
	var errs []error
	for _, key := range s.keys {
		pt, err := s.backend.Decrypt(ctx, key, ct)
		if err == nil {
			return pt, nil
		}
		errs = append(errs, err)
		if !rejectedByKey(err) {
			// Vault is down or refusing us: another key will not help.
			break
		}
	}
	return nil, errors.Join(errs...)
}

// rejectedByKey reports whether Vault refused the ciphertext itself under
// one key, so that another key may still read it.
func rejectedByKey(err error) bool { return vault.KindOf(err) == vault.InvalidInput }
