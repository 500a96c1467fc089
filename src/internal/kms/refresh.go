package kms

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// firstRetry is the wait after a failed refresh: long enough not to hammer
// a Vault that is electing a leader (a few seconds), short enough that
// Status recovers within seconds of Vault doing so.
const firstRetry = time.Second

// flight is one refresh that every caller arriving while it runs shares.
type flight struct {
	done chan struct{}
	err  error
}

// Run keeps the key snapshot fresh until ctx ends: a refresh every refresh
// interval, and after a failed one, retries with jittered backoff until one
// succeeds. Waiting a whole interval after a failure would make one
// transient error (a leader election, a restart) fail Status that long.
func (s *Service) Run(ctx context.Context) {
	retry := backoff{max: maxRetry(s.refresh)}
	for {
		wait, poke := s.refresh, s.poke
		if err := s.Refresh(ctx); err != nil {
			// A failed Encrypt pokes; during an outage every Encrypt fails,
			// and a poke must not cut the backoff short.
			wait, poke = retry.next(), nil
		} else {
			retry.reset()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-poke:
			t.Stop()
		}
	}
}

// Refresh reads the encryption key's latest version from Vault. Callers
// that arrive while a refresh runs share it rather than queue for their
// own, and each waits only as long as its own ctx allows.
func (s *Service) Refresh(ctx context.Context) error {
	s.flightMu.Lock()
	f := s.inflight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		s.inflight = f
		// The refresh outlives a caller that gives up: the others still
		// wait for it, and each Vault call it makes has its own timeout.
		go s.fly(context.WithoutCancel(ctx), f)
	}
	s.flightMu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("wait for the key read from Vault: %w", ctx.Err())
	}
}

func (s *Service) fly(ctx context.Context, f *flight) {
	err := s.readKey(ctx)
	s.recordRefresh(err)
	s.flightMu.Lock()
	s.inflight = nil
	s.flightMu.Unlock()
	f.err = err
	close(f.done)
}

// retryCeiling is the longest wait between retries: the apiserver asks an
// unhealthy plugin's Status every 10 s, and a read that often costs Vault
// nothing worth saving.
const retryCeiling = 10 * time.Second

// maxRetry caps the backoff below the refresh interval too, so that trouble
// never makes the plugin look at Vault less often than when all is well.
func maxRetry(refresh time.Duration) time.Duration {
	return max(min(refresh/2, retryCeiling), time.Millisecond)
}

// backoff doubles from firstRetry up to max, each wait jittered into its
// upper half so that the plugins of a control plane do not retry in step.
type backoff struct {
	max  time.Duration
	last time.Duration
}

func (b *backoff) next() time.Duration {
	if b.last == 0 {
		b.last = min(firstRetry, b.max)
	} else {
		b.last = min(2*b.last, b.max)
	}
	half := b.last / 2
	return half + rand.N(b.last-half+1)
}

func (b *backoff) reset() { b.last = 0 }
