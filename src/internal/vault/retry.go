package vault

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"
)

// Retries of transit calls. A rate-limit quota (429) or a Vault that cannot
// serve for a moment (5xx, no answer) often passes within the apiserver's
// few seconds: waiting a little and trying again turns a failed call into a
// slow one. A retry starts only if it can finish before the caller's
// deadline; bad input, a missing key or a refused token never pass, so
// they are never retried.

const (
	firstBackoff = 25 * time.Millisecond
	maxBackoff   = 500 * time.Millisecond
)

// retrying runs attempt until it succeeds, fails for good, or the next
// attempt could not finish before deadline. Without a deadline from the
// caller, retries stop one timeout after the first attempt began.
func (t *Transit) retrying(ctx context.Context, attempt func(context.Context) error) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(t.timeout)
	}
	for n := 0; ; n++ {
		var hint retryHint
		began := time.Now()
		err := attempt(context.WithValue(ctx, retryHintKey{}, &hint))
		noteLimit(ctx, n, err)
		if err == nil || !retryable(ctx, err) {
			return err
		}
		wait := max(backoff(n), hint.after())
		// The last attempt's duration is the best guess of the next one's.
		if time.Now().Add(wait + time.Since(began)).After(deadline) {
			return err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return err
		case <-timer.C:
		}
	}
}

// retryable reports whether err can pass by itself: a rate limit, a Vault
// that cannot serve now, or one attempt's own timeout while the caller
// still waits.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch KindOf(err) {
	case LimitExceeded, Unavailable, DeadlineExceeded:
		// DeadlineExceeded with the caller's context alive: the attempt's
		// own timeout, which a healthy connection can beat.
		return true
	}
	return false
}

// backoff is the wait before retry n+1: exponential, capped, and jittered
// so that callers refused together do not come back together.
func backoff(n int) time.Duration {
	d := min(firstBackoff<<min(n, 10), maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// retryHint carries Vault's Retry-After from the HTTP exchange, which
// vault/api's errors do not keep, to retrying.
type retryHint struct{ nanos atomic.Int64 }

type retryHintKey struct{}

func (h *retryHint) after() time.Duration { return time.Duration(h.nanos.Load()) }

// retryAfterRecorder records the Retry-After of a 429 or 503 in the
// request's retryHint, if it has one.
type retryAfterRecorder struct{ next http.RoundTripper }

func (r retryAfterRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := r.next.RoundTrip(req)
	if err != nil || (res.StatusCode != http.StatusTooManyRequests && res.StatusCode != http.StatusServiceUnavailable) {
		return res, err
	}
	if h, ok := req.Context().Value(retryHintKey{}).(*retryHint); ok {
		h.nanos.Store(int64(parseRetryAfter(res.Header.Get("Retry-After"), time.Now())))
	}
	return res, err
}
