package vault_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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
	failStatus int // of the failed batch; 0: 500

	batches   atomic.Int64
	failNext  atomic.Bool
	failedLen atomic.Int64
}

func (p *faultProxy) start(t *testing.T, target string) string {
	return proxyTo(t, target, func(w http.ResponseWriter, body []byte) bool {
		if bytes.Contains(body, []byte("batch_input")) {
			p.batches.Add(1)
			if p.failNext.CompareAndSwap(true, false) {
				p.failedLen.Store(int64(bytes.Count(body, []byte(`"ciphertext"`)) + bytes.Count(body, []byte(`"plaintext"`))))
				status := p.failStatus
				if status == 0 {
					status = http.StatusInternalServerError
				}
				http.Error(w, `{"errors":["injected failure"]}`, status)
				return false
			}
		}
		return true
	})
}

// proxyTo starts a reverse proxy to target that shows each request's body
// to inspect first; inspect returns false when it has answered itself.
func proxyTo(t *testing.T, target string, inspect func(w http.ResponseWriter, body []byte) bool) string {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if inspect(w, body) {
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func groupCommitAgainst(t *testing.T, addr string, token string) *vault.Transit {
	t.Helper()
	return transitAgainst(t, addr, token, true, 5*time.Second)
}

// transitAgainst returns transit calls on the Vault at addr, each bounded
// by timeout.
func transitAgainst(t *testing.T, addr, token string, groupCommit bool, timeout time.Duration) *vault.Transit {
	t.Helper()
	return transitWrapped(t, addr, token, groupCommit, timeout, nil)
}

// transitWrapped is transitAgainst with the HTTP transport wrapped.
func transitWrapped(t *testing.T, addr, token string, groupCommit bool, timeout time.Duration, wrap func(http.RoundTripper) http.RoundTripper) *vault.Transit {
	t.Helper()
	t.Setenv("VAULT_ADDR", addr)
	t.Setenv("VAULT_TOKEN", token)
	c, err := vault.NewClient(timeout, 64, wrap)
	if err != nil {
		t.Fatal(err)
	}
	s := vault.NewSession(c, vault.StaticToken{Token: token}, timeout, quietLog(), nil)
	return vault.NewTransit(s, "transit", timeout, groupCommit)
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

// TestGroupCommitBatchFailureFailsOnlyThatBatch fails one batch in flight
// (a fault a real Vault cannot be asked for). A failure that cannot pass by
// itself reaches exactly that batch's callers; one that can (a 500) is
// retried and reaches none. Either way the next batch succeeds.
func TestGroupCommitBatchFailureFailsOnlyThatBatch(t *testing.T) {
	for _, tc := range []struct {
		name       string
		failStatus int
		retried    bool
	}{
		{"bad request", http.StatusBadRequest, false},
		{"server error", http.StatusInternalServerError, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := testvault.Start(t, testvault.Options{})
			v.EnableTransit("transit", "a")
			proxy := faultProxy{failStatus: tc.failStatus}
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
			wantFailed := proxy.failedLen.Load()
			if tc.retried {
				wantFailed = 0
			}
			if failed.Load() != wantFailed {
				t.Fatalf("%d callers failed, want %d (the failed batch held %d)", failed.Load(), wantFailed, proxy.failedLen.Load())
			}
			if ok.Load() != 200-failed.Load() || ok.Load() == 0 {
				t.Fatalf("%d ok, %d failed", ok.Load(), failed.Load())
			}
			// The key is usable again straight away.
			if _, err := b.Encrypt(ctx, "a", 1, []byte("after")); err != nil {
				t.Fatal(err)
			}
		})
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

// slowProxy forwards to a real Vault after a delay, as a distant or
// overloaded Vault answers, and checks each encrypt item as it arrives:
// its plaintext holds its caller's deadline.
type slowProxy struct {
	delay       time.Duration
	items, late atomic.Int64
}

func (p *slowProxy) start(t *testing.T, target string) string {
	return proxyTo(t, target, func(_ http.ResponseWriter, body []byte) bool {
		p.check(t, body, time.Now())
		time.Sleep(p.delay)
		return true
	})
}

func (p *slowProxy) check(t *testing.T, body []byte, arrived time.Time) {
	var req struct {
		Plaintext  string                       `json:"plaintext"`
		BatchInput []struct{ Plaintext string } `json:"batch_input"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Errorf("request body is not JSON: %v", err)
		return
	}
	plaintexts := []string{req.Plaintext}
	for _, in := range req.BatchInput {
		plaintexts = append(plaintexts, in.Plaintext)
	}
	for _, b64 := range plaintexts {
		if b64 == "" {
			continue
		}
		pt, _ := base64.StdEncoding.DecodeString(b64)
		var deadline int64
		if _, err := fmt.Sscanf(string(pt), "deadline %d", &deadline); err != nil {
			t.Errorf("plaintext %q holds no deadline", pt)
			continue
		}
		p.items.Add(1)
		if arrived.UnixNano() > deadline {
			p.late.Add(1)
		}
	}
}

// With Vault 1.5 s away and the apiserver's 3 s deadlines, group commit
// must not fail calls that requests of their own would have carried: a
// queued caller cannot wait for the batch in flight and then for its own.
// And no item goes to Vault after its caller has given up.
func TestGroupCommitUnderASlowVault(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	const callers, callsEach = 128, 3
	type outcome struct{ ok, failed, items, late int64 }
	outcomes := map[bool]outcome{}
	for _, tc := range []struct {
		name        string
		groupCommit bool
	}{
		{"one request per call", false},
		{"group commit", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := &slowProxy{delay: 1500 * time.Millisecond}
			// The plugin's default VAULT_TIMEOUT.
			tr := transitAgainst(t, proxy.start(t, v.Addr), v.RootToken, tc.groupCommit, 2*time.Second)
			var ok, failed atomic.Int64
			began := time.Now()
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for range callsEach {
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						deadline, _ := ctx.Deadline()
						_, err := tr.Encrypt(ctx, "kube", 1, fmt.Appendf(nil, "deadline %d", deadline.UnixNano()))
						cancel()
						if err != nil {
							failed.Add(1)
						} else {
							ok.Add(1)
						}
					}
				})
			}
			wg.Wait()
			o := outcome{ok.Load(), failed.Load(), proxy.items.Load(), proxy.late.Load()}
			outcomes[tc.groupCommit] = o
			t.Logf("%d ok, %d failed in %s; %d items reached Vault, %d after their caller's deadline",
				o.ok, o.failed, time.Since(began).Round(100*time.Millisecond), o.items, o.late)
			if o.late != 0 {
				t.Errorf("%d items reached Vault after their caller's deadline", o.late)
			}
		})
	}
	alone, grouped := outcomes[false], outcomes[true]
	if grouped.ok < alone.ok {
		t.Errorf("group commit: %d calls succeeded, one request per call: %d", grouped.ok, alone.ok)
	}
}

// stormDeadline bounds each call of a decrypt storm: it is generous, since
// the storms test that no call fails, not how fast they run on a shared
// test machine.
const stormDeadline = 30 * time.Second

// encryptDEKs encrypts n DEKs with key and returns their ciphertexts.
func encryptDEKs(t *testing.T, tr *vault.Transit, key string, n int) []string {
	t.Helper()
	cts := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ct, err := tr.Encrypt(context.Background(), key, 1, fmt.Appendf(nil, "dek-%d", i))
			if err != nil {
				t.Errorf("encrypt %d: %v", i, err)
			}
			cts[i] = ct
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return cts
}

// decryptStorm decrypts calls times at once, cycling through cts, and
// returns the calls that failed or gave the wrong DEK.
func decryptStorm(t *testing.T, tr *vault.Transit, key string, cts []string, calls int) int64 {
	t.Helper()
	var failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), stormDeadline)
			defer cancel()
			pt, err := tr.Decrypt(ctx, key, cts[i%len(cts)])
			if err == nil && string(pt) != fmt.Sprintf("dek-%d", i%len(cts)) {
				err = fmt.Errorf("got DEK %q for ciphertext %d", pt, i%len(cts))
			}
			if err != nil {
				failed.Add(1)
				firstErr.Do(func() { t.Logf("first failure: %v (kind %v)", err, vault.KindOf(err)) })
			}
		})
	}
	wg.Wait()
	return failed.Load()
}

// Vault's listener refuses a batch_input longer than
// max_json_array_element_count (Vault 1.21: a 500, "JSON array exceeds
// allowed element count"). Group commit splits a refused
// batch and keeps later ones to the size that passed, so a storm of
// decrypts against a listener capped at 100 elements loses no call.
func TestBatchesSplitToFitVaultRequestLimits(t *testing.T) {
	v := testvault.Start(t, testvault.Options{ExtraListener: "max_json_array_element_count = 100"})
	v.EnableTransit("transit", "kube")
	limited := v.ExtraAddr

	// The limit is in force: a batch of 101 is refused, as bad input.
	c := v.Client()
	if err := c.SetAddress(limited); err != nil {
		t.Fatal(err)
	}
	input := make([]map[string]any, 101)
	for i := range input {
		input[i] = map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte("x"))}
	}
	_, err := c.Logical().Write("transit/encrypt/kube", map[string]any{"batch_input": input})
	if vault.KindOf(err) != vault.InvalidInput {
		t.Fatalf("a batch of 101 on a listener capped at 100: %v; want it refused as bad input", err)
	}
	t.Logf("Vault refuses a batch over the listener's limit with: %v", err)

	var proxy faultProxy
	tr := groupCommitAgainst(t, proxy.start(t, limited), v.RootToken)
	cts := encryptDEKs(t, tr, "kube", 500)
	if failed := decryptStorm(t, tr, "kube", cts, 10000); failed != 0 {
		t.Fatalf("%d of 10000 decrypts failed", failed)
	}
	if proxy.batches.Load() == 0 {
		t.Fatal("no batch request reached Vault: the test proves nothing about group commit")
	}
}

// statusCounter counts Vault's answers by HTTP status.
type statusCounter struct{ byStatus [600]atomic.Int64 }

func (c *statusCounter) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		res, err := next.RoundTrip(r)
		if err == nil && res.StatusCode < len(c.byStatus) {
			c.byStatus[res.StatusCode].Add(1)
		}
		return res, err
	})
}

func (c *statusCounter) count(status int) int64 { return c.byStatus[status].Load() }

// A rate-limit quota of 20 requests a second (which binds root tokens
// too) refuses most of a storm's batches at first: they are retried within
// their callers' deadlines, and no call fails.
func TestRateLimitedStormLosesNoCall(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	answers := &statusCounter{}
	tr := transitWrapped(t, v.Addr, v.RootToken, true, 2*time.Second, answers.wrap)
	cts := encryptDEKs(t, tr, "kube", 500)
	v.Write("sys/quotas/rate-limit/storm", map[string]any{"rate": 20, "interval": "1s"})

	if failed := decryptStorm(t, tr, "kube", cts, 10000); failed != 0 {
		t.Fatalf("%d of 10000 decrypts failed", failed)
	}
	refused := answers.count(http.StatusTooManyRequests)
	if refused == 0 {
		t.Fatal("the quota refused no request: the test proves nothing about retries")
	}
	t.Logf("the quota refused %d requests, all retried", refused)
}

// Retries stop where the caller's deadline would cut the next attempt, and
// what cannot pass by itself is not retried at all.
func TestRetriesKeepToTheCallersDeadline(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	answers := &statusCounter{}
	tr := transitWrapped(t, v.Addr, v.RootToken, false, 2*time.Second, answers.wrap)
	ctx := context.Background()

	_, err := tr.Decrypt(ctx, "kube", "vault:v1:bm90IGEgY2lwaGVydGV4dA==")
	if kind := vault.KindOf(err); kind != vault.InvalidInput {
		t.Fatalf("decrypt of a forged ciphertext: %v, kind %v; want %v", err, kind, vault.InvalidInput)
	}
	if n := answers.count(http.StatusBadRequest); n != 1 {
		t.Fatalf("bad input sent %d times, want once", n)
	}

	ct, err := tr.Encrypt(ctx, "kube", 0, []byte("dek"))
	if err != nil {
		t.Fatal(err)
	}
	// One request a minute: the quota refuses everything after the first.
	v.Write("sys/quotas/rate-limit/tight", map[string]any{"rate": 1, "interval": "1m"})
	_, _ = tr.Decrypt(ctx, "kube", ct)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err = tr.Decrypt(short, "kube", ct)
	// Given up before the deadline, with Vault's own verdict, rather than
	// cut short by it in mid-attempt.
	if kind := vault.KindOf(err); kind != vault.LimitExceeded {
		t.Fatalf("decrypt under an exhausted quota: %v, kind %v; want %v", err, kind, vault.LimitExceeded)
	}
	if n := answers.count(http.StatusTooManyRequests); n < 2 {
		t.Fatalf("%d requests refused by the quota: the call was not retried", n)
	}
}

// Callers that give up while queued are left out of the batch: Vault sees
// only the request in flight, not the items nobody waits for.
func TestGroupCommitLeavesOutCallersThatHaveGone(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	proxy := &slowProxy{delay: time.Second}
	tr := transitAgainst(t, proxy.start(t, v.Addr), v.RootToken, true, 5*time.Second)
	// The queued callers give up while the request in flight is still out,
	// before their items would leave on their own.
	tr.BatchLinger = time.Hour
	noDeadline := fmt.Appendf(nil, "deadline %d", time.Now().Add(time.Hour).UnixNano())

	inFlight := make(chan error, 1)
	go func() {
		_, err := tr.Encrypt(context.Background(), "kube", 1, noDeadline)
		inFlight <- err
	}()
	for proxy.items.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, giveUp := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := tr.Encrypt(ctx, "kube", 1, noDeadline); !errors.Is(err, context.Canceled) {
				t.Errorf("caller that gave up: %v; want %v", err, context.Canceled)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // let them queue behind the request in flight
	giveUp()
	wg.Wait()
	if err := <-inFlight; err != nil {
		t.Fatal(err)
	}
	// The next call goes out, so anything sent on the gone callers' behalf
	// would have reached the proxy by the time it returns.
	if _, err := tr.Encrypt(context.Background(), "kube", 1, noDeadline); err != nil {
		t.Fatal(err)
	}
	if n := proxy.items.Load(); n != 2 {
		t.Fatalf("%d items reached Vault, want 2: the gone callers' items were sent", n)
	}
}

// Behind a slow Vault, calls that queue behind the request in flight do not
// wait for it to land: after the linger they go out together, in a batch
// of their own, while the first request is still out. Without the linger
// they would wait a whole round trip on top of their own.
func TestQueuedCallsLeaveAfterTheLinger(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	proxy := &slowProxy{delay: 3 * time.Second}
	tr := transitAgainst(t, proxy.start(t, v.Addr), v.RootToken, true, 10*time.Second)
	noDeadline := fmt.Appendf(nil, "deadline %d", time.Now().Add(time.Hour).UnixNano())

	first := make(chan error, 1)
	go func() {
		_, err := tr.Encrypt(context.Background(), "kube", 1, noDeadline)
		first <- err
	}()
	for proxy.items.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	const queued = 50
	var wg sync.WaitGroup
	for range queued {
		wg.Go(func() {
			if _, err := tr.Encrypt(context.Background(), "kube", 1, noDeadline); err != nil {
				t.Errorf("queued call: %v", err)
			}
		})
	}
	for proxy.items.Load() < 1+queued {
		select {
		case err := <-first:
			t.Fatalf("the first request landed (%v) before the queued calls went out: %d of %d items reached Vault", err, proxy.items.Load()-1, queued)
		case <-time.After(5 * time.Millisecond):
		}
	}
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}
