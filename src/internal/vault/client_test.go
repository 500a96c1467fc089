package vault_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
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

// blackholeProxy forwards TCP to a real Vault and can silently drop
// everything on the connections open so far, as a lost conntrack entry or
// a VIP failover does, while new connections get through.
type blackholeProxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	conns []*proxiedConn
}

type proxiedConn struct {
	client, server net.Conn
	dropped        atomic.Bool
}

func startBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{target: target, ln: ln}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.client.Close()
			c.server.Close()
		}
	})
	return p
}

func (p *blackholeProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxiedConn{client: client, server: server}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		go c.forward(server, client)
		go c.forward(client, server)
	}
}

// forward copies src to dst until either closes, discarding what arrives
// once the connection is dropped: the sender sees no error, no reset, just
// silence.
func (c *proxiedConn) forward(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if c.dropped.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// dropEstablished blackholes every connection open now and returns how
// many there were.
func (p *blackholeProxy) dropEstablished() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.dropped.Store(true)
	}
	return len(p.conns)
}

// After the connection to Vault goes silent, calls recover on a new one
// within seconds: over HTTP/2 pings find the dead connection, and over
// HTTP/1.1 a connection whose request timed out is never reused.
func TestCallsRecoverFromASilentConnection(t *testing.T) {
	for _, tc := range []struct {
		name        string
		tls         bool
		wantHTTP2   bool
		recoverIn   time.Duration
		maxFailures int
	}{
		// Pings: 3 s of silence, 2 s to answer, then a new connection.
		{"http2 over tls", true, true, 15 * time.Second, 100},
		// The request that timed out closed its connection: the next one dials.
		{"http1.1", false, false, 15 * time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := testvault.Start(t, testvault.Options{TLS: tc.tls})
			v.EnableTransit("transit", "kube")
			u, err := url.Parse(v.Addr)
			if err != nil {
				t.Fatal(err)
			}
			proxy := startBlackholeProxy(t, u.Host)
			t.Setenv("VAULT_ADDR", u.Scheme+"://"+proxy.ln.Addr().String())
			t.Setenv("VAULT_CACERT", v.CACert)
			t.Setenv("VAULT_TOKEN", v.RootToken)
			cc := &connCounter{}
			const timeout = 2 * time.Second // the plugin's default VAULT_TIMEOUT
			c, err := vault.NewClient(timeout, 8, cc.wrap)
			if err != nil {
				t.Fatal(err)
			}
			tr := vault.NewTransit(vault.NewSession(c, vault.StaticToken{Token: v.RootToken}, timeout, quietLog(), nil), "transit", timeout, false)
			encrypt := func() error {
				// The apiserver's deadline.
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				_, err := tr.Encrypt(ctx, "kube", 0, []byte("dek"))
				return err
			}
			if err := encrypt(); err != nil {
				t.Fatal(err)
			}
			if got := cc.notHTTP2.Load() == 0; got != tc.wantHTTP2 {
				t.Fatalf("HTTP/2 in use: %v, want %v", got, tc.wantHTTP2)
			}
			if n := proxy.dropEstablished(); n != 1 {
				t.Fatalf("%d connections to drop, want 1", n)
			}
			connsBefore := cc.newConns.Load()
			dropped := time.Now()
			failures := 0
			for {
				err := encrypt()
				if err == nil {
					break
				}
				failures++
				if kind := vault.KindOf(err); kind != vault.DeadlineExceeded && kind != vault.Unavailable {
					t.Errorf("call on the silent connection: %v, kind %v; want %v or %v", err, kind, vault.DeadlineExceeded, vault.Unavailable)
				}
				if failures > tc.maxFailures || time.Since(dropped) > tc.recoverIn {
					t.Fatalf("still failing %s after the connection went silent (%d failures): %v", time.Since(dropped).Round(time.Second), failures, err)
				}
			}
			t.Logf("recovered %s after the connection went silent, %d calls failed", time.Since(dropped).Round(100*time.Millisecond), failures)
			if failures == 0 {
				t.Error("no call failed: the silent connection was not in use, the test proves nothing")
			}
			if cc.newConns.Load() == connsBefore {
				t.Error("calls succeed again without a new connection")
			}
		})
	}
}
