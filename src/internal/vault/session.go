package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
)

// Observer is told about token events, for metrics. Methods must not block.
type Observer interface {
	Login(err error)
	Renew(err error)
	TokenExpiry(t time.Time)
}

type nopObserver struct{}

func (nopObserver) Login(error)           {}
func (nopObserver) Renew(error)           {}
func (nopObserver) TokenExpiry(time.Time) {}

// Session keeps the client's token alive: it logs in, renews before expiry,
// logs in again when renewal is capped by max_ttl or fails, and when a
// transit request is refused with 403 (relogin). Only one login runs at a
// time.
type Session struct {
	client  *api.Client
	login   Login
	timeout time.Duration
	log     *slog.Logger
	obs     Observer

	// PollInterval is how often a token file is checked for changes.
	PollInterval time.Duration
	// MaxBackoff caps the wait between failed logins.
	MaxBackoff time.Duration

	kick chan struct{}

	// logins counts successful logins, so that a caller refused with 403
	// can tell whether someone logged in since its request went out. It is
	// written under mu, with the fields below, and read without it by
	// Transit.do.
	logins atomic.Uint64

	mu      sync.Mutex
	expires time.Time     // zero: never expires
	lastErr error         // of the latest login or renewal
	done    chan struct{} // closed when a login attempt ends
	hasTok  bool
}

// NewSession returns a session; Run must be started for it to log in.
func NewSession(c *api.Client, l Login, timeout time.Duration, log *slog.Logger, obs Observer) *Session {
	if obs == nil {
		obs = nopObserver{}
	}
	return &Session{
		client: c, login: l, timeout: timeout, log: log, obs: obs,
		PollInterval: 2 * time.Second, MaxBackoff: 30 * time.Second,
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
		// Until the first login finishes, say why nothing works yet.
		lastErr: errors.New("not logged in to Vault yet"),
	}
}

// Client is the Vault client whose token this session manages.
func (s *Session) Client() *api.Client { return s.client }

// Err is nil while the session holds a live token whose last renewal or
// login succeeded.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.hasTok:
		return fmt.Errorf("no Vault token: %w", s.lastErr)
	case !s.expires.IsZero() && time.Now().After(s.expires):
		return fmt.Errorf("Vault token expired at %s: %w", s.expires.Format(time.RFC3339), s.lastErr)
	case s.lastErr != nil:
		return s.lastErr
	}
	return nil
}

// relogin asks the lifecycle loop for a new login unless one succeeded
// since the count of logins was seen, and waits for it.
func (s *Session) relogin(ctx context.Context, seen uint64) error {
	s.mu.Lock()
	if s.logins.Load() != seen {
		s.mu.Unlock()
		return nil
	}
	wait := s.done
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	select {
	case <-wait:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logins.Load() == seen {
		return s.lastErr
	}
	return nil
}

// Run logs in and keeps the token alive until ctx ends.
func (s *Session) Run(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		secret, err := s.attempt(ctx)
		if err != nil {
			s.log.Warn("vault login failed; retrying", "method", fmt.Sprintf("%T", s.login), "retry_in", backoff, "error", err)
			if !s.sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, s.MaxBackoff)
			continue
		}
		backoff = time.Second
		started := time.Now()
		s.keepAlive(ctx, secret)
		// A token at the end of its life can make keepAlive return at
		// once, again and again: pace the logins.
		if time.Since(started) < time.Second && !s.sleep(ctx, time.Second) {
			return
		}
	}
}

// attempt performs one login and publishes its outcome.
func (s *Session) attempt(ctx context.Context) (*api.Secret, error) {
	lctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	secret, err := s.login.Login(lctx, s.client)
	if err == nil && (secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "") {
		err = errors.New("Vault returned no token")
	}
	s.obs.Login(err)

	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.done)
	s.done = make(chan struct{})
	s.lastErr = err
	if err != nil {
		return nil, err
	}
	s.client.SetToken(secret.Auth.ClientToken)
	s.hasTok = true
	s.logins.Add(1)
	s.setExpiry(secret.Auth.LeaseDuration)
	s.log.Info("logged in to Vault", "method", fmt.Sprintf("%T", s.login),
		"ttl", time.Duration(secret.Auth.LeaseDuration)*time.Second, "renewable", secret.Auth.Renewable)
	return secret, nil
}

func (s *Session) setExpiry(ttlSeconds int) {
	if ttlSeconds <= 0 {
		s.expires = time.Time{}
	} else {
		s.expires = time.Now().Add(time.Duration(ttlSeconds) * time.Second)
	}
	s.obs.TokenExpiry(s.expires)
}

// keepAlive renews the token until renewal stops helping, a relogin is
// requested, the token file changes, or ctx ends.
func (s *Session) keepAlive(ctx context.Context, secret *api.Secret) {
	var renewCh <-chan *api.RenewOutput
	var doneCh <-chan error
	var expiry <-chan time.Time
	auth := secret.Auth
	switch {
	case auth.LeaseDuration <= 0:
		// A token that never expires (root or a non-expiring token):
		// nothing to renew.
	case auth.Renewable:
		w, err := s.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{
			Secret:        secret,
			RenewBehavior: api.RenewBehaviorErrorOnErrors,
		})
		if err != nil {
			s.log.Error("cannot watch token lifetime", "error", err)
			return
		}
		go w.Start()
		defer w.Stop()
		renewCh, doneCh = w.RenewCh(), w.DoneCh()
	default:
		// Not renewable: log in again shortly before it expires.
		lead := time.Duration(auth.LeaseDuration) * time.Second / 10
		t := time.NewTimer(time.Duration(auth.LeaseDuration)*time.Second - lead)
		defer t.Stop()
		expiry = t.C
	}

	fp := s.fingerprint()
	poll := time.NewTicker(s.PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.log.Info("Vault refused the token; logging in again")
			return
		case r := <-renewCh:
			s.obs.Renew(nil)
			s.mu.Lock()
			s.lastErr = nil
			s.setExpiry(r.Secret.Auth.LeaseDuration)
			s.mu.Unlock()
			s.log.Debug("renewed Vault token", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
		case err := <-doneCh:
			if err != nil {
				s.obs.Renew(err)
				s.mu.Lock()
				s.lastErr = fmt.Errorf("renew Vault token: %w", err)
				s.mu.Unlock()
				s.log.Warn("Vault token renewal failed; logging in again", "error", err)
			} else {
				s.log.Info("Vault token reached its maximum TTL; logging in again")
			}
			return
		case <-expiry:
			return
		case <-poll.C:
			if now := s.fingerprint(); now != fp {
				s.log.Info("token file changed; reading it again")
				return
			}
		}
	}
}

// fingerprint asks a login whose credential can change under it (a token
// file) for a cheap identity of that credential; other logins have none.
func (s *Session) fingerprint() string {
	if w, ok := s.login.(interface{ Fingerprint() string }); ok {
		return w.Fingerprint()
	}
	return ""
}

func (s *Session) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-s.kick:
	}
	return true
}
