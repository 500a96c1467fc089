package vault

import (
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"2", 2 * time.Second},
		{"-5", 0},
		{"soon", 0},
		{"999999", time.Hour},
		{now.Add(3 * time.Second).Format(http1Date), 3 * time.Second},
		{now.Add(-3 * time.Second).Format(http1Date), 0},
	} {
		if got := parseRetryAfter(tc.header, now); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.header, got, tc.want)
		}
	}
}

const http1Date = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestBackoffGrowsWithJitterAndStaysCapped(t *testing.T) {
	for _, tc := range []struct {
		retry    int
		min, max time.Duration
	}{
		{0, firstBackoff / 2, firstBackoff},
		{1, firstBackoff, 2 * firstBackoff},
		{3, 4 * firstBackoff, 8 * firstBackoff},
		{50, maxBackoff / 2, maxBackoff},
	} {
		for range 100 {
			if d := backoff(tc.retry); d < tc.min || d > tc.max {
				t.Fatalf("backoff(%d) = %v, want %v to %v", tc.retry, d, tc.min, tc.max)
			}
		}
	}
}
