package kms

import (
	"context"
	"fmt"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// Health is nil while Status may vouch for the snapshot's key_id: the
// latest key read and the token are fine, or Vault has been unreachable for
// no longer than the status grace since the key was last verified. It
// makes no Vault call.
func (s *Service) Health() error {
	authErr := s.backend.AuthErr()
	p := s.lastErr.Load()
	if authErr == nil && p == nil {
		return fmt.Errorf("%w: key not read from Vault yet", ErrNotReady)
	}
	err := authErr
	if err == nil {
		err = *p
	}
	if err == nil {
		snap := s.snap.Load()
		if age := s.now().Sub(snap.fetched); age > 3*s.refresh {
			return fmt.Errorf("%w: key last read from Vault %s ago", ErrNotReady, age.Round(time.Second))
		}
		return nil
	}
	if authErr != nil && !s.tokenAlive() {
		return err
	}
	if !outage(err) {
		return err
	}
	verified := s.verified.Load()
	if verified == nil || s.grace == 0 {
		return err
	}
	if since := s.now().Sub(*verified); since > s.grace {
		return fmt.Errorf("Vault unreachable since the key was last verified %s ago, longer than VAULT_KMS_STATUS_GRACE=%s: %w",
			since.Round(time.Second), s.grace, err)
	}
	return nil
}

// outage reports whether err says only that Vault cannot answer now, which
// says nothing against the key last verified. A missing key, a denied read,
// a key that cannot encrypt or an unusable token each say something, and
// fail Status at once.
func outage(err error) bool {
	switch vault.KindOf(err) {
	case vault.Unavailable, vault.DeadlineExceeded, vault.LimitExceeded:
		return true
	}
	return false
}

// tokenAlive reports whether the token is known to have TTL left, so that
// a session error about it (a renewal Vault did not answer) is an outage,
// not a dead token.
func (s *Service) tokenAlive() bool {
	if s.tokenExpiry == nil {
		return false
	}
	exp := s.tokenExpiry()
	return !exp.IsZero() && s.now().Before(exp)
}

// recordRefresh keeps a refresh's outcome for Health. A verdict against
// the key (anything but an outage) withdraws the grace until a read
// succeeds again, so a later outage cannot revive a key_id seen to be bad.
func (s *Service) recordRefresh(err error) {
	s.lastErr.Store(&err)
	switch {
	case err == nil:
		now := s.now()
		s.verified.Store(&now)
	case !outage(err):
		s.verified.Store(nil)
		s.log.Warn("cannot read the encryption key from Vault; Status fails", "key", s.keys[0], "error", err)
	case s.grace > 0 && s.verified.Load() != nil:
		s.log.Warn("cannot reach Vault; Status keeps reporting the last verified key_id within VAULT_KMS_STATUS_GRACE",
			"key", s.keys[0], "grace", s.grace, "error", err)
	default:
		s.log.Warn("cannot reach Vault; Status fails", "key", s.keys[0], "error", err)
	}
}

// Status reports the key_id in use, from the snapshot alone, or an error
// while the plugin cannot vouch for that key (see Health). The error
// matters: kube-apiserver keeps writing with its cached DEK for as long as
// Status returns the same key_id, healthy or not, so only an error stops it
// writing (after its own 3 minutes) data that a deleted key would make
// unreadable; and an error makes its /readyz fail, on every apiserver at
// once. The grace trades the first for the second during short outages.
func (s *Service) Status(ctx context.Context) (*StatusResponse, error) {
	if err := s.Health(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	return &StatusResponse{Version: "v2", Healthz: "ok", KeyID: s.snap.Load().keyID}, nil
}
