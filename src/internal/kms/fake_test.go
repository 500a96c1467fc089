package kms

import (
	"context"
	"errors"
	"fmt"
	"net/url"
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
	// answer, when set, replaces transit's ciphertext: what a proxy that
	// rewrites Vault's answers would hand back.
	answer func(version int, pt []byte) string
	// readGate, when set, holds every ReadKey until it is closed, ignoring
	// the caller's context the way a slow Vault would until its timeout.
	readGate chan struct{}
}

func newFake(keys ...string) *fakeBackend {
	f := &fakeBackend{keys: map[string]*vault.Key{}, scope: "ns|transit"}
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
	if f.answer != nil {
		return f.answer(version, pt), nil
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
	gate := f.readGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
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

// setReadErr makes the next key reads fail with err (nil: succeed).
func (f *fakeBackend) setReadErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readErr = err
}

func (f *fakeBackend) reads() int {
	n := 0
	for _, c := range f.Calls() {
		if c.Op == "read" {
			n++
		}
	}
	return n
}

func (f *fakeBackend) Scope(context.Context) (string, error) { return f.scope, nil }
func (f *fakeBackend) AuthErr() error                        { return f.authErr }

// errVaultDown is what vault/api returns when nothing listens at VAULT_ADDR.
var errVaultDown = &url.Error{Op: "Get", URL: "http://127.0.0.1:8200/v1/transit/keys/kube", Err: errors.New("dial tcp 127.0.0.1:8200: connection refused")}
