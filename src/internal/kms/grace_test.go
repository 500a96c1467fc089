package kms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// clock is a settable time for the service's grace and staleness checks.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestStatusGraceDuringVaultTrouble(t *testing.T) {
	const grace = 2 * time.Minute
	tokenLives := func() time.Time { return time.Unix(1700000000, 0).Add(time.Hour) }
	tokenDied := func() time.Time { return time.Unix(1700000000, 0).Add(-time.Minute) }
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		expiry  func() time.Time
		break_  func(*fakeBackend)
		after   time.Duration // from the last good read to the Status call
		wantErr string        // "": Status reports the key_id verified before
	}{
		{name: "unreachable within grace", grace: grace, break_: down, after: time.Minute},
		{name: "unreachable at the end of grace", grace: grace, break_: down, after: grace},
		{name: "unreachable beyond grace", grace: grace, break_: down, after: grace + time.Second, wantErr: "longer than VAULT_KMS_STATUS_GRACE=2m0s"},
		{name: "grace 0 fails closed", grace: 0, break_: down, after: time.Second, wantErr: "connection refused"},
		{name: "grace 0 fails closed at once", grace: 0, break_: down, after: 0, wantErr: "connection refused"},
		{name: "sealed or 5xx", grace: grace, break_: readFails(&api.ResponseError{StatusCode: 503, Errors: []string{"Vault is sealed"}}), after: time.Minute},
		{name: "rate limited", grace: grace, break_: readFails(&api.ResponseError{StatusCode: 429}), after: time.Minute},
		{name: "timed out", grace: grace, break_: readFails(fmt.Errorf("read key: %w", context.DeadlineExceeded)), after: time.Minute},
		{name: "key gone", grace: grace, break_: func(f *fakeBackend) { delete(f.keys, "kube") }, after: time.Second, wantErr: "transit key not found"},
		{name: "read denied", grace: grace, break_: readFails(&api.ResponseError{StatusCode: 403, Errors: []string{"permission denied"}}), after: time.Second, wantErr: "permission denied"},
		{name: "key cannot encrypt", grace: grace, break_: func(f *fakeBackend) { f.keys["kube"].SupportsEncryption = false }, after: time.Second, wantErr: "cannot encrypt"},
		{name: "renewal unanswered, token lives", grace: grace, expiry: tokenLives, break_: func(f *fakeBackend) { down(f); f.authErr = fmt.Errorf("renew Vault token: %w", errVaultDown) }, after: time.Minute},
		{name: "token expired", grace: grace, expiry: tokenDied, break_: func(f *fakeBackend) { down(f); f.authErr = fmt.Errorf("Vault token expired: %w", errVaultDown) }, after: time.Second, wantErr: "Vault token expired"},
		{name: "token expiry unknown", grace: grace, break_: func(f *fakeBackend) { down(f); f.authErr = fmt.Errorf("no Vault token: %w", errVaultDown) }, after: time.Second, wantErr: "no Vault token"},
		{name: "token revoked", grace: grace, expiry: tokenLives, break_: func(f *fakeBackend) { f.authErr = &api.ResponseError{StatusCode: 403} }, after: time.Second, wantErr: "403"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake("kube")
			clk := &clock{t: time.Unix(1700000000, 0)}
			opts := []Option{WithStatusGrace(tc.grace)}
			if tc.expiry != nil {
				opts = append(opts, WithTokenExpiry(tc.expiry))
			}
			s := New(f, []string{"kube"}, 20*time.Second, quiet, opts...)
			before := verifyOn(t, s, clk)
			tc.break_(f)
			clk.t = clk.t.Add(tc.after)
			_ = s.Refresh(context.Background())
			st, err := s.Status(context.Background())
			if tc.wantErr == "" {
				if err != nil || st.KeyID != before.KeyID || st.Healthz != "ok" {
					t.Fatalf("status %+v, %v; want the key_id verified before, %q", st, err, before.KeyID)
				}
				if s.Health() != nil {
					t.Fatalf("Health() = %v while Status succeeds", s.Health())
				}
				return
			}
			if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("status %+v, %v; want not ready mentioning %q", st, err, tc.wantErr)
			}
			if s.Health() == nil {
				t.Fatal("Health() is nil while Status fails")
			}
		})
	}
}

// A key seen gone must not come back to life because Vault then becomes
// unreachable within the grace of the read before.
func TestBadKeyWithdrawsTheGrace(t *testing.T) {
	f := newFake("kube")
	clk := &clock{t: time.Unix(1700000000, 0)}
	s := New(f, []string{"kube"}, 20*time.Second, quiet, WithStatusGrace(time.Hour))
	s.now = clk.now
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name   string
		break_ func(*fakeBackend)
	}{
		{"key gone", func(f *fakeBackend) { delete(f.keys, "kube") }},
		{"then Vault unreachable", down},
	} {
		step.break_(f)
		clk.t = clk.t.Add(time.Second)
		_ = s.Refresh(context.Background())
		if _, err := s.Status(context.Background()); err == nil {
			t.Fatalf("%s: Status succeeds", step.name)
		}
	}
}

// verifyOn puts s on clk, reads its key and returns the Status that
// vouches for it.
func verifyOn(t *testing.T, s *Service, clk *clock) *StatusResponse {
	t.Helper()
	s.now = clk.now
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func down(f *fakeBackend) { f.readErr = errVaultDown }

func readFails(err error) func(*fakeBackend) {
	return func(f *fakeBackend) { f.readErr = err }
}
