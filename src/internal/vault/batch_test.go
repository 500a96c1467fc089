package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// faultProxy forwards to a real Vault, counts batch requests, and fails the
// next batch on demand: a fault the real server cannot be asked for.
type faultProxy struct {
	batches   atomic.Int64
	failNext  atomic.Bool
	failedLen atomic.Int64
}

func (p *faultProxy) start(t *testing.T, target string) string {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte("batch_input")) {
			p.batches.Add(1)
			if p.failNext.CompareAndSwap(true, false) {
				p.failedLen.Store(int64(bytes.Count(body, []byte(`"ciphertext"`)) + bytes.Count(body, []byte(`"plaintext"`))))
				http.Error(w, `{"errors":["injected failure"]}`, http.StatusInternalServerError)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func groupCommitAgainst(t *testing.T, addr string, token string) *vault.Transit {
	t.Helper()
	t.Setenv("VAULT_ADDR", addr)
	t.Setenv("VAULT_TOKEN", token)
	c, err := vault.NewClient(5*time.Second, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := vault.NewSession(c, vault.StaticToken{Token: token}, 5*time.Second, quietLog(), nil)
	return vault.NewTransit(s, "transit", 5*time.Second, true)
}

// TestGroupCommitGivesEachCallerItsOwnAnswer runs many concurrent callers
// over two keys, a third of them with ciphertexts that cannot decrypt.
func TestGroupCommitGivesEachCallerItsOwnAnswer(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "a", "b")
	var proxy faultProxy
	b := groupCommitAgainst(t, proxy.start(t, v.Addr), v.RootToken)
	ctx := context.Background()

	// Ciphertexts made with group commit too, concurrently.
	const n = 300
	keys := []string{"a", "b"}
	cts := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ct, err := b.Encrypt(ctx, keys[i%2], 1, fmt.Appendf(nil, "secret-%d", i))
			if err != nil {
				t.Errorf("encrypt %d: %v", i, err)
			}
			cts[i] = ct
		})
	}
	wg.Wait()

	for i := range n {
		wg.Go(func() {
			ct, key := cts[i], keys[i%2]
			bad := i%3 == 0
			if bad {
				ct = ct[:len(ct)-4] + "AAA=" // tampered: fails authentication
			}
			pt, err := b.Decrypt(ctx, key, ct)
			switch {
			case bad && err == nil:
				t.Errorf("caller %d: tampered ciphertext decrypted to %q", i, pt)
			case bad && !errors.As(err, new(*vault.ItemError)) && !isBadRequest(err):
				t.Errorf("caller %d: tampered ciphertext gave %v; want its own item error", i, err)
			case !bad && (err != nil || string(pt) != fmt.Sprintf("secret-%d", i)):
				t.Errorf("caller %d: got %q, %v", i, pt, err)
			}
		})
	}
	wg.Wait()
	if proxy.batches.Load() == 0 {
		t.Fatal("no batch request reached Vault: the test proves nothing about group commit")
	}
}

func isBadRequest(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == 400
}

// TestGroupCommitBatchFailureFailsOnlyThatBatch fails one batch in flight:
// exactly its callers see the error and the next batch succeeds.
func TestGroupCommitBatchFailureFailsOnlyThatBatch(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "a")
	var proxy faultProxy
	b := groupCommitAgainst(t, proxy.start(t, v.Addr), v.RootToken)
	ctx := context.Background()
	proxy.failNext.Store(true)

	var failed, ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			_, err := b.Encrypt(ctx, "a", 1, fmt.Appendf(nil, "p%d", i))
			switch {
			case err == nil:
				ok.Add(1)
			case strings.Contains(err.Error(), "injected failure"):
				failed.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	wg.Wait()
	if proxy.failNext.Load() {
		t.Fatal("no batch was formed, so none failed; the test proves nothing")
	}
	if failed.Load() != proxy.failedLen.Load() {
		t.Fatalf("%d callers failed, the failed batch held %d", failed.Load(), proxy.failedLen.Load())
	}
	if ok.Load() != 200-failed.Load() || ok.Load() == 0 {
		t.Fatalf("%d ok, %d failed", ok.Load(), failed.Load())
	}
	// The key is usable again straight away.
	if _, err := b.Encrypt(ctx, "a", 1, []byte("after")); err != nil {
		t.Fatal(err)
	}
}

func TestLoneRequestGoesStraightOut(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "a")
	var proxy faultProxy
	b := groupCommitAgainst(t, proxy.start(t, v.Addr), v.RootToken)
	for i := range 10 {
		ct, err := b.Encrypt(context.Background(), "a", 1, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := b.Decrypt(context.Background(), "a", ct); err != nil || string(pt) != "x" {
			t.Fatalf("round %d: %q %v", i, pt, err)
		}
	}
	if n := proxy.batches.Load(); n != 0 {
		t.Fatalf("%d batch requests for sequential calls; want 0", n)
	}
}
