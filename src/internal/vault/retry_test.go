package vault

import (
	"testing"
	"time"
)

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
