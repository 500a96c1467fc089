package vault

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{"86400", retryAfterCap},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.header, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s; want %s", tc.header, got, tc.want)
		}
	}
}

func TestLoginBackoff(t *testing.T) {
	limited := &api.ResponseError{StatusCode: http.StatusTooManyRequests}
	tests := []struct {
		name                string
		err                 error
		backoff, maxBackoff time.Duration
		atLeast             time.Duration
	}{
		{"plain failure keeps the backoff", errors.New("connection refused"), 2 * time.Second, 30 * time.Second, 2 * time.Second},
		{"429 without Retry-After waits the floor", limited, time.Second, 30 * time.Second, limitedFloor},
		{"429 floor is capped by MaxBackoff", limited, time.Second, 2 * time.Second, 2 * time.Second},
		{"429 honours Retry-After", &retryLaterError{err: limited, after: 40 * time.Second}, time.Second, 30 * time.Second, 40 * time.Second},
		{"Retry-After below the backoff keeps the backoff", &retryLaterError{err: limited, after: time.Second}, 8 * time.Second, 30 * time.Second, 8 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 100 {
				got := loginBackoff(tc.err, tc.backoff, tc.maxBackoff)
				// Jitter adds up to a quarter, and never takes away.
				if got < tc.atLeast || got > tc.atLeast+tc.atLeast/4 {
					t.Fatalf("loginBackoff = %s; want in [%s, %s]", got, tc.atLeast, tc.atLeast+tc.atLeast/4)
				}
				seen[got] = true
			}
			// Plugins refused together must not come back together.
			if len(seen) < 2 {
				t.Fatalf("100 waits, all %v: no jitter", seen)
			}
		})
	}
}
