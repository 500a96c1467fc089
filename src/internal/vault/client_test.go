package vault_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// connCounter wraps a transport, as the plugin's request metrics do, and
// counts new connections and answers that did not come over HTTP/2.
type connCounter struct {
	newConns, answers, notHTTP2 atomic.Int64
}

func (c *connCounter) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				c.newConns.Add(1)
			}
		}}
		res, err := next.RoundTrip(r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
		if err == nil {
			c.answers.Add(1)
			if res.ProtoMajor != 2 {
				c.notHTTP2.Add(1)
			}
		}
		return res, err
	})
}

// Against a Vault that serves TLS, the plugin's one client carries every
// call, concurrent or not, over a single HTTP/2 connection: no TLS
// handshake per call, and no new connection when the idle pool runs short.
func TestTLSVaultCallsShareOneHTTP2Connection(t *testing.T) {
	v := testvault.Start(t, testvault.Options{TLS: true})
	setupKMS(v)
	t.Setenv("VAULT_ADDR", v.Addr)
	t.Setenv("VAULT_CACERT", v.CACert)
	t.Setenv("VAULT_TOKEN", v.RootToken)
	cc := &connCounter{}
	// An idle pool of 2 for 64 concurrent callers: HTTP/1.1 would have to
	// open more connections.
	c, err := vault.NewClient(5*time.Second, 2, cc.wrap)
	if err != nil {
		t.Fatal(err)
	}
	tr := vault.NewTransit(vault.NewSession(c, vault.StaticToken{Token: v.RootToken}, 5*time.Second, quietLog(), nil), "transit", 5*time.Second, false)
	ctx := context.Background()
	// One call first, so that the burst finds the connection open.
	k, err := tr.ReadKey(ctx, "kube")
	if err != nil {
		t.Fatal(err)
	}
	const callers = 64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			dek := fmt.Appendf(nil, "dek-%d", i)
			ct, err := tr.Encrypt(ctx, "kube", k.LatestVersion, dek)
			if err == nil {
				var pt []byte
				if pt, err = tr.Decrypt(ctx, "kube", ct); err == nil && string(pt) != string(dek) {
					err = fmt.Errorf("decrypt = %q, want %q", pt, dek)
				}
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, want := cc.answers.Load(), int64(1+2*callers); got < want {
		t.Fatalf("%d answers through the wrapper, want at least %d", got, want)
	}
	if n := cc.notHTTP2.Load(); n != 0 {
		t.Errorf("%d of %d answers were not HTTP/2", n, cc.answers.Load())
	}
	if n := cc.newConns.Load(); n != 1 {
		t.Errorf("%d connections opened for %d requests, want 1", n, cc.answers.Load())
	}
}
