package faults

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/faultproxy"
)

func TestLongestDown(t *testing.T) {
	t0 := time.Unix(1000, 0)
	poll := func(sec int, code codes.Code) outcome {
		at := t0.Add(time.Duration(sec) * time.Second)
		return outcome{start: at, end: at.Add(10 * time.Millisecond), code: code}
	}
	ok, down := codes.OK, codes.Unavailable
	tests := []struct {
		name      string
		polls     []outcome
		want      time.Duration
		wantFirst int // seconds after t0; -1: never failed
	}{
		{"always ok", []outcome{poll(0, ok), poll(1, ok)}, 0, -1},
		{"one outage", []outcome{poll(0, ok), poll(1, down), poll(2, down), poll(3, ok)}, 2 * time.Second, 1},
		{"the longer of two", []outcome{poll(0, down), poll(1, ok), poll(2, down), poll(3, down), poll(4, down), poll(5, ok)}, 3 * time.Second, 0},
		{"down at the end", []outcome{poll(0, ok), poll(1, down), poll(2, down)}, time.Second + 10*time.Millisecond, 1},
		{"out of order", []outcome{poll(3, ok), poll(1, down), poll(0, ok)}, 2 * time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, first := longestDown(tt.polls)
			if got != tt.want {
				t.Errorf("longest = %s, want %s", got, tt.want)
			}
			wantFirst := time.Time{}
			if tt.wantFirst >= 0 {
				wantFirst = t0.Add(time.Duration(tt.wantFirst) * time.Second)
			}
			if !first.Equal(wantFirst) {
				t.Errorf("first failure at %s, want %s", first, wantFirst)
			}
		})
	}
}

func TestFailedOutside(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	calls := []outcome{
		{start: at(0), end: at(0.5), code: codes.Unavailable},    // before the window
		{start: at(1.5), end: at(2.5), code: codes.Unavailable},  // overlaps its start: inside
		{start: at(3), end: at(4), code: codes.DeadlineExceeded}, // inside
		{start: at(4.5), end: at(6), code: codes.OK},             // a success never counts
		{start: at(6), end: at(7), code: codes.Unavailable},      // after
	}
	if got := failedOutside(calls, at(2), at(5)); got != 2 {
		t.Errorf("failedOutside = %d, want 2", got)
	}
}

func TestLateItemsMatchesEveryItemToItsDeadline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name              string
		body              string
		at                time.Time
		wantMatched, want int
	}{
		{"one plaintext in time", `{"plaintext":"cA=="}`, t0, 1, 0},
		{"one plaintext late", `{"plaintext":"cA=="}`, t0.Add(4 * time.Second), 1, 1},
		{"a batch, one item late", `{"batch_input":[{"ciphertext":"vault:v1:a"},{"ciphertext":"vault:v1:b"}]}`, t0.Add(2 * time.Second), 2, 1},
		{"unknown items are not counted", `{"plaintext":"other"}`, t0.Add(time.Hour), 0, 0},
		{"not JSON", `plaintext=cA==`, t0.Add(time.Hour), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &lateItems{due: map[string]time.Time{}}
			l.expect("cA==", t0.Add(3*time.Second))
			l.expect("vault:v1:a", t0.Add(3*time.Second))
			l.expect("vault:v1:b", t0.Add(time.Second))
			l.observe(faultproxy.Request{At: tt.at, Body: []byte(tt.body)})
			if matched, late := l.counts(); matched != tt.wantMatched || late != tt.want {
				t.Errorf("matched %d, late %d; want %d, %d", matched, late, tt.wantMatched, tt.want)
			}
		})
	}
}
