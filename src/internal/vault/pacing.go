package vault

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
)

const (
	// limitedFloor is the least wait after a login refused with 429 that
	// said nothing of when to come back: a rate-limit quota's interval is
	// a second or more, and its block_interval often much longer.
	limitedFloor = 5 * time.Second
	// retryAfterCap bounds a Retry-After, so that a wrong header cannot
	// stop the plugin from logging in for hours.
	retryAfterCap = 10 * time.Minute
)

// retryAfter records the Retry-After of the latest 429 a login received.
// vault/api's ResponseError keeps no headers, so the login client records
// it from a response callback.
type retryAfter struct{ nanos atomic.Int64 }

func (r *retryAfter) record(res *api.Response) {
	if res == nil || res.StatusCode != http.StatusTooManyRequests {
		return
	}
	if d := parseRetryAfter(res.Header.Get("Retry-After"), time.Now()); d > 0 {
		r.nanos.Store(int64(d))
	}
}

func (r *retryAfter) reset()             { r.nanos.Store(0) }
func (r *retryAfter) get() time.Duration { return time.Duration(r.nanos.Load()) }

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
// It returns 0 for an empty or unreadable header or a time already past.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return min(time.Duration(secs)*time.Second, retryAfterCap)
	}
	at, err := http.ParseTime(h)
	if err != nil {
		return 0
	}
	return min(max(at.Sub(now), 0), retryAfterCap)
}

// retryLaterError is a failed login with Vault's word on when to try again.
type retryLaterError struct {
	err   error
	after time.Duration
}

func (e *retryLaterError) Error() string {
	return e.err.Error() + " (Vault says retry after " + e.after.String() + ")"
}

func (e *retryLaterError) Unwrap() error { return e.err }

// loginBackoff is the wait after a failed login: the backoff, raised for a
// rate limit to what Vault asked or limitedFloor, with jitter added so that
// the plugins of a cluster, refused together, do not come back together.
func loginBackoff(err error, backoff, maxBackoff time.Duration) time.Duration {
	wait := backoff
	if KindOf(err) == LimitExceeded {
		wait = max(wait, min(limitedFloor, maxBackoff))
		if re, ok := err.(*retryLaterError); ok {
			wait = max(wait, re.after)
		}
	}
	return wait + rand.N(wait/4+1)
}

// revoke revokes a token this session created and has replaced, so that
// tokens do not pile up in Vault until their TTL ends. Failure costs
// nothing but that, and is only logged.
func (s *Session) revoke(ctx context.Context, token string) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := withToken(s.loginClient, token).Auth().Token().RevokeSelfWithContext(ctx, "")
	switch KindOf(err) {
	case OK:
		s.log.Debug("revoked the replaced Vault token")
	case Denied:
		s.log.Debug("the replaced Vault token was already revoked or expired")
	default:
		s.log.Warn("could not revoke the replaced Vault token; it lives until its TTL ends", "error", err)
	}
}

// isBatch reports whether token is a batch token, which Vault cannot
// revoke: it ends with its TTL.
func isBatch(token string) bool {
	return strings.HasPrefix(token, "hvb.") || strings.HasPrefix(token, "b.")
}
