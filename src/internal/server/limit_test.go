package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
)

// gate is a handler that holds every call until release is closed, and
// counts how many it held at once.
type gate struct {
	release chan struct{}
	mu      sync.Mutex
	now     int
	peak    int
}

func (g *gate) handle(ctx context.Context, req any) (any, error) {
	g.mu.Lock()
	g.now++
	g.peak = max(g.peak, g.now)
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.now--; g.mu.Unlock() }()
	<-g.release
	return "ok", nil
}

func (g *gate) held() int { g.mu.Lock(); defer g.mu.Unlock(); return g.now }

// waitUntil polls until cond holds; the test's own timeout ends a hang.
func waitUntil(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

// With every slot taken and as many calls waiting, a further Encrypt or
// Decrypt is refused at once, naming the setting, and does not join the
// queue; Status still passes; the rest are served once slots free, never
// more than the cap at a time.
func TestAdmissionCapsServesWaitersAndRefusesTheRest(t *testing.T) {
	const limit = 2
	a := newAdmission(limit)
	g := &gate{release: make(chan struct{})}
	intercept := a.interceptor()
	call := func(ctx context.Context, method string) error {
		_, err := intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, g.handle)
		return err
	}

	var wg sync.WaitGroup
	served := make(chan error, 2*limit)
	for i := range 2 * limit {
		method := []string{"/v2.KeyManagementService/Encrypt", "/v1beta1.KeyManagementService/Decrypt"}[i%2]
		wg.Go(func() { served <- call(context.Background(), method) })
	}
	waitUntil(func() bool { return g.held() == limit && waiters(a) == limit })

	for _, method := range []string{"/v2.KeyManagementService/Decrypt", "/v1beta1.KeyManagementService/Encrypt"} {
		err := call(context.Background(), method)
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "VAULT_KMS_MAX_INFLIGHT") {
			t.Fatalf("%s past the cap and the queue: %v; want ResourceExhausted naming VAULT_KMS_MAX_INFLIGHT", method, err)
		}
	}
	// Status makes no Vault call and must answer health checks during a
	// burst: it passes.
	if _, err := intercept(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/v2.KeyManagementService/Status"},
		func(context.Context, any) (any, error) { return "ok", nil }); err != nil {
		t.Fatalf("Status with every slot taken: %v", err)
	}
	// The refused calls did not join the queue.
	if waiters(a) != limit {
		t.Fatalf("%d waiting; want %d", waiters(a), limit)
	}
	close(g.release)
	wg.Wait()
	close(served)
	for err := range served {
		if err != nil {
			t.Errorf("a call within the cap or the queue failed: %v", err)
		}
	}
	if g.peak > limit {
		t.Errorf("%d calls were served at once; the cap is %d", g.peak, limit)
	}
}

// A waiter whose caller gives up leaves the queue with an error naming the
// setting, takes no slot, and the code says the caller left.
func TestAdmissionWaiterLeavesWhenItsCallerDoes(t *testing.T) {
	a := newAdmission(1)
	g := &gate{release: make(chan struct{})}
	intercept := a.interceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/v2.KeyManagementService/Encrypt"}
	held := make(chan error, 1)
	go func() { _, err := intercept(context.Background(), nil, info, g.handle); held <- err }()
	waitUntil(func() bool { return g.held() == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { _, err := intercept(ctx, nil, info, g.handle); waited <- err }()
	waitUntil(func() bool { return waiters(a) == 1 })
	cancel()
	err := <-waited
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "VAULT_KMS_MAX_INFLIGHT") {
		t.Fatalf("waiter whose caller left: %v; want context.Canceled naming VAULT_KMS_MAX_INFLIGHT", err)
	}
	if got := grpcCode(err); got != codes.Canceled {
		t.Errorf("code %v; want Canceled", got)
	}
	if n := waiters(a); n != 0 {
		t.Errorf("%d still counted as waiting", n)
	}
	close(g.release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	// The slot is free again.
	if _, err := intercept(context.Background(), nil, info, g.handle); err != nil {
		t.Fatalf("a call after the others ended: %v", err)
	}
}

// gateCore serves Encrypt through a gate.
type gateCore struct{ g *gate }

func (c gateCore) Encrypt(ctx context.Context, _ string, pt []byte) (*kms.EncryptResponse, error) {
	if _, err := c.g.handle(ctx, nil); err != nil {
		return nil, err
	}
	return &kms.EncryptResponse{Ciphertext: pt, KeyID: "k"}, nil
}

func (gateCore) Decrypt(context.Context, string, *kms.DecryptRequest) ([]byte, error) {
	return nil, nil
}

func (gateCore) Status(context.Context) (*kms.StatusResponse, error) {
	return &kms.StatusResponse{Version: "v2", Healthz: "ok", KeyID: "k"}, nil
}

// One connection, as an apiserver holds, is never refused: its calls past
// the cap wait in the client for a stream, and the core never serves more
// than the cap at once.
func TestOneConnectionQueuesPastTheCap(t *testing.T) {
	const limit, calls = 2, 12
	g := &gate{release: make(chan struct{})}
	conn := ServeCore(t, gateCore{g}, limit)
	c := kmsapi.NewKeyManagementServiceClient(conn)

	errs := make(chan error, calls)
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			_, err := c.Encrypt(context.Background(), &kmsapi.EncryptRequest{Uid: "u", Plaintext: []byte("dek")})
			errs <- err
		})
	}
	waitUntil(func() bool { return g.held() == limit })
	close(g.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a call on one connection failed: %v", err)
		}
	}
	if g.peak > limit {
		t.Errorf("%d calls were served at once; the cap is %d", g.peak, limit)
	}
}

// waiters is how many admitted calls wait for a slot.
func waiters(a *admission) int64 { return a.admitted.Load() - int64(len(a.slots)) }
