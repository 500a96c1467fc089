package vault

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/hashicorp/vault/api"
)

// TestRateLimitNarrowsFlights: a 429 leaves the target one request at a
// time, so that its retry is not starved by fresh batches, until a request
// passes at its first attempt. The real-Vault evidence is make faults'
// rate-limit row; this pins the rule itself.
func TestRateLimitNarrowsFlights(t *testing.T) {
	limited := &api.ResponseError{StatusCode: http.StatusTooManyRequests, Errors: []string{"rate limit quota exceeded"}}
	denied := &api.ResponseError{StatusCode: http.StatusForbidden, Errors: []string{"permission denied"}}
	for _, tc := range []struct {
		name    string
		before  bool
		attempt int
		err     error
		want    int
	}{
		{"429 narrows", false, 0, limited, 1},
		{"429 on a retry narrows", false, 2, limited, 1},
		{"first attempt passes: widens", true, 0, nil, maxFlights},
		{"a retry that passes keeps it narrow", true, 1, nil, 1},
		{"another error changes nothing (narrow)", true, 0, denied, 1},
		{"another error changes nothing (wide)", false, 0, denied, maxFlights},
		{"a network error changes nothing", true, 0, errors.New("connection reset"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &queue{}
			q.limited.Store(tc.before)
			noteLimit(context.WithValue(context.Background(), queueKey{}, q), tc.attempt, tc.err)
			if got := q.flightLimit(); got != tc.want {
				t.Errorf("flightLimit() = %d, want %d", got, tc.want)
			}
		})
	}
	// A request sent for no queue (group commit off, or a foreign value
	// under the key) must pass through without a panic.
	noteLimit(context.Background(), 0, limited)
	noteLimit(context.WithValue(context.Background(), queueKey{}, "not a queue"), 0, limited)
}
