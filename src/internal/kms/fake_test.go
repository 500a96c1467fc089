package kms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// call is one request the fake backend saw.
type call struct {
	Op      string
	Key     string
	Version int
}

// fakeBackend records calls and answers like transit would, with faults
// injected through its fields. Ciphertexts are "vault:v<N>:<b64 of plaintext>"-shaped.
type fakeBackend struct {
	mu       sync.Mutex
	calls    []call
	keys     map[string]*vault.Key
	scope    string
	authErr  error
	readErr  error
	cryptErr error
}

func newFake(keys ...string) *fakeBackend {
	f := &fakeBackend{keys: map[string]*vault.Key{}, scope: "cluster|ns|transit"}
	for _, k := range keys {
		f.keys[k] = &vault.Key{Name: k, Type: "aes256-gcm96", LatestVersion: 1, LatestCreated: time.Unix(1700000000, 0), SupportsEncryption: true, SupportsDecryption: true}
	}
	return f
}

func (f *fakeBackend) record(c call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *fakeBackend) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeBackend) rotate(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := *f.keys[key]
	k.LatestVersion++
	k.LatestCreated = k.LatestCreated.Add(time.Hour)
	f.keys[key] = &k
}

func (f *fakeBackend) Encrypt(ctx context.Context, key string, version int, pt []byte) (string, error) {
	f.record(call{"encrypt", key, version})
	if f.cryptErr != nil {
		return "", f.cryptErr
	}
	// Reversible stand-in for transit: the plaintext, hex-free but base64-shaped.
	return fmt.Sprintf("vault:v%d:%s", version, encodeB64(pt)), nil
}

func (f *fakeBackend) Decrypt(ctx context.Context, key, ct string) ([]byte, error) {
	f.record(call{Op: "decrypt", Key: key})
	if f.cryptErr != nil {
		return nil, f.cryptErr
	}
	parts := strings.SplitN(ct, ":", 3)
	pt, err := decodeB64(parts[2])
	if err != nil {
		// What transit answers for a ciphertext it cannot parse.
		return nil, &api.ResponseError{StatusCode: 400, Errors: []string{"invalid ciphertext"}}
	}
	return pt, nil
}

func (f *fakeBackend) ReadKey(ctx context.Context, key string) (*vault.Key, error) {
	f.record(call{Op: "read", Key: key})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readErr != nil {
		return nil, f.readErr
	}
	k, ok := f.keys[key]
	if !ok {
		return nil, vault.ErrKeyNotFound
	}
	c := *k
	return &c, nil
}

func (f *fakeBackend) Scope(context.Context) (string, error) { return f.scope, nil }
func (f *fakeBackend) AuthErr() error                        { return f.authErr }

var errVaultDown = errors.New("dial tcp 127.0.0.1:8200: connection refused")
