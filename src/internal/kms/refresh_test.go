package kms

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond with a bound far above what it needs, so that a slow
// machine does not fail the test and a broken one does.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
	}
}

// runInBackground runs s's refresh loop until the test ends.
func runInBackground(t *testing.T, s *Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// With an hour between refreshes, only the retry after a failed one can
// bring Status back.
func TestRunRetriesAFailedRefresh(t *testing.T) {
	f := newFake("kube")
	f.readErr = errVaultDown
	s := New(f, []string{"kube"}, time.Hour, quiet)
	runInBackground(t, s)

	waitFor(t, "the first read", func() bool { return f.reads() >= 1 })
	if _, err := s.Status(context.Background()); err == nil {
		t.Fatal("Status succeeds while the key read fails")
	}
	f.setReadErr(nil)
	waitFor(t, "Status to recover after Vault did", func() bool {
		_, err := s.Status(context.Background())
		return err == nil
	})
	// Back to the interval: no more reads once one succeeded.
	n := f.reads()
	if _, err := s.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.reads(); got != n {
		t.Fatalf("%d key reads after recovery with an hour's interval", got-n)
	}
}

func TestBackoffStaysBelowTheRefreshInterval(t *testing.T) {
	for _, refresh := range []time.Duration{time.Millisecond, 500 * time.Millisecond, 20 * time.Second, time.Hour} {
		b := backoff{max: maxRetry(refresh)}
		var last time.Duration
		for i := range 30 {
			d := b.next()
			if d <= 0 || d >= refresh {
				t.Fatalf("refresh %s, retry %d: wait %s; want within (0, %s)", refresh, i, d, refresh)
			}
			if i == 0 && d > firstRetry {
				t.Fatalf("refresh %s: first retry after %s; want at most %s", refresh, d, firstRetry)
			}
			last = d
		}
		if ceiling := maxRetry(refresh); last < ceiling/2 || last > retryCeiling {
			t.Errorf("refresh %s: wait %s after 30 retries; want it between %s and %s", refresh, last, ceiling/2, ceiling)
		}
		b.reset()
		if d := b.next(); d > firstRetry {
			t.Errorf("refresh %s: after reset, wait %s; want at most %s", refresh, d, firstRetry)
		}
	}
}

// Encrypts that arrive before the first snapshot share one key read, and a
// caller whose deadline passes returns then, not when the read ends.
func TestFirstEncryptsShareOneRead(t *testing.T) {
	f := newFake("kube")
	gate := make(chan struct{})
	f.readGate = gate
	s := New(f, []string{"kube"}, time.Hour, quiet)

	const callers = 8
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := s.Encrypt(context.Background(), "", []byte("dek"))
			errs <- err
		})
	}
	waitFor(t, "the first read to start", func() bool { return f.reads() >= 1 })

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	impatient := make(chan error, 1)
	go func() {
		_, err := s.Encrypt(short, "", []byte("dek"))
		impatient <- err
	}()
	select {
	case err := <-impatient:
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotReady) {
			t.Fatalf("encrypt past its deadline: %v; want not ready, deadline exceeded", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("an encrypt waited past its deadline for another caller's key read")
	}

	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.reads(); n != 1 {
		t.Fatalf("%d concurrent first encrypts made %d key reads; want 1", callers, n)
	}
}

// During an outage every Encrypt fails and pokes the refresh loop; the
// loop must leave the poke for later and keep to its backoff, or it would
// read the key once per Encrypt.
func TestPokesWaitOutTheBackoff(t *testing.T) {
	f := newFake("kube")
	s := newService(t, f, "kube") // one good read: Encrypt goes to Vault
	f.readErr = errVaultDown
	f.cryptErr = errVaultDown
	runInBackground(t, s)

	waitFor(t, "a failed read", func() bool { return f.reads() >= 2 })
	if _, err := s.Encrypt(context.Background(), "", []byte("dek")); err == nil {
		t.Fatal("encrypt succeeds with Vault down")
	}
	// The backoff's own retry comes; the poke is still waiting after it.
	waitFor(t, "the retry after the backoff", func() bool { return f.reads() >= 3 })
	if len(s.poke) != 1 {
		t.Fatal("the refresh loop took a failed Encrypt's poke while backing off")
	}
}
