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
// logs in again when renewal is capped by max_ttl or fails, and when Vault
// refuses the token on a transit call and a lookup proves it dead
// (denied.go). Only one login runs at a time, and logins are paced: neither
// a refusal nor anything else cuts short the wait after a failed login or
// between logins that refusals asked for.
type Session struct {
	client *api.Client
	// loginClient is the client logins use: a copy of client without a
	// token that records Vault's Retry-After. Only Run's goroutine uses it.
	loginClient *api.Client
	retryAfter  retryAfter
	login       Login
	timeout     time.Duration
	log         *slog.Logger
	obs         Observer

	// PollInterval is how often a token file is checked for changes.
	PollInterval time.Duration
	// MaxBackoff caps the wait between failed logins, and between logins
	// that refusals of fresh tokens ask for.
	MaxBackoff time.Duration
	// AliveFor is how long a lookup that found a refused token alive is
	// believed: 403s in that time are policy denials without a new lookup.
	AliveFor time.Duration

	kick chan struct{}

	// inUse is the token requests go out with and the count of logins
	// that made it; read without mu on every request.
	inUse atomic.Pointer[sent]

	mu sync.Mutex
	// logins counts successful logins, so that a caller refused with 403
	// can tell whether someone logged in since its request went out.
	logins  uint64
	expires time.Time     // zero: never expires
	lastErr error         // of the latest login or renewal
	done    chan struct{} // closed when a login attempt ends or is put off
	hasTok  bool
	// refused: a lookup proved the current token dead.
	refused bool
	// nextLogin is, while Run waits before its next login, when that login
	// may start; zero otherwise.
	nextLogin time.Time
	// owned is the current token if this session's login created it, so
	// that it is revoked once replaced; empty for tokens given to us.
	owned string
	check *tokenCheck // the latest lookup of a refused token
}

// NewSession returns a session; Run must be started for it to log in.
func NewSession(c *api.Client, l Login, timeout time.Duration, log *slog.Logger, obs Observer) *Session {
	if obs == nil {
		obs = nopObserver{}
	}
	s := &Session{
		client: c, login: l, timeout: timeout, log: log, obs: obs,
		PollInterval: 2 * time.Second, MaxBackoff: 30 * time.Second, AliveFor: 10 * time.Second,
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
		// Until the first login finishes, say why nothing works yet.
		lastErr: errors.New("not logged in to Vault yet"),
	}
	// A login needs no token, and sending a dead one would only confuse
	// Vault's audit log.
	s.loginClient = c.WithResponseCallbacks(s.retryAfter.record)
	s.loginClient.ClearToken()
	return s
}

// Client is the Vault client whose token this session manages.
func (s *Session) Client() *api.Client { return s.client }

// Err is nil while the session holds a token that has time left and that
// Vault has not been proven to refuse. A failed renewal or login alone is
// not an error while the token lasts: Run logs in again in the background,
// and the failure is logged and kept for the message once the token ends.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.hasTok:
		return fmt.Errorf("no Vault token: %w", s.lastErr)
	case s.refused && s.lastErr != nil:
		return fmt.Errorf("Vault refuses the token (revoked or expired) and a new login failed: %w", s.lastErr)
	case s.refused:
		return errors.New("Vault refuses the token (revoked or expired); logging in again")
	case !s.expires.IsZero() && time.Now().After(s.expires) && s.lastErr != nil:
		return fmt.Errorf("Vault token expired at %s: %w", s.expires.Format(time.RFC3339), s.lastErr)
	case !s.expires.IsZero() && time.Now().After(s.expires):
		return fmt.Errorf("Vault token expired at %s", s.expires.Format(time.RFC3339))
	}
	return nil
}

// sent is what a caller remembers of the token its request went out with.
type sent struct {
	token  string
	logins uint64
}

// current is the token requests go out with now.
func (s *Session) current() sent {
	if u := s.inUse.Load(); u != nil {
		return *u
	}
	return sent{}
}

// relogin asks Run for a new login unless one succeeded since the count of
// logins was seen, and waits for it if it can come before ctx ends.
func (s *Session) relogin(ctx context.Context, seen uint64) error {
	for {
		s.mu.Lock()
		if s.logins != seen {
			s.mu.Unlock()
			return nil
		}
		if !s.nextLogin.IsZero() && !comesBefore(ctx, s.nextLogin) {
			err := s.pacedErr()
			s.mu.Unlock()
			return err
		}
		wait := s.done
		// Sent under mu so that a successful login, which drains the
		// channel under mu, never leaves a stale request behind.
		select {
		case s.kick <- struct{}{}:
		default:
		}
		s.mu.Unlock()

		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}

		s.mu.Lock()
		logins, paused, lastErr := s.logins, !s.nextLogin.IsZero(), s.lastErr
		s.mu.Unlock()
		switch {
		case logins != seen:
			return nil
		case !paused && lastErr != nil:
			return lastErr
		}
		// Run put the login off, or one is under way: look again.
	}
}

// pacedErr says why no login comes now; s.mu is held.
func (s *Session) pacedErr() error {
	at := s.nextLogin.Format(time.RFC3339)
	if s.lastErr != nil {
		return fmt.Errorf("next login to Vault at %s: %w", at, s.lastErr)
	}
	return fmt.Errorf("next login to Vault at %s: logins are paced after Vault refused fresh tokens", at)
}

// comesBefore reports whether t comes before ctx's deadline.
func comesBefore(ctx context.Context, t time.Time) bool {
	d, ok := ctx.Deadline()
	return !ok || t.Before(d)
}

// Run logs in and keeps the token alive until ctx ends.
func (s *Session) Run(ctx context.Context) {
	backoff := time.Second
	// pace is the least time between logins that refusals ask for: it
	// doubles while fresh tokens keep being refused, so that a token Vault
	// refuses at once (a policy without lookup-self, say) cannot make the
	// plugin log in again and again.
	pace := time.Second
	for ctx.Err() == nil {
		secret, err := s.attempt(ctx)
		if err != nil {
			wait := loginBackoff(err, backoff, s.MaxBackoff)
			s.log.Warn("vault login failed; retrying", "method", fmt.Sprintf("%T", s.login), "retry_in", wait, "error", err)
			if !s.pause(ctx, wait) {
				return
			}
			backoff = min(backoff*2, s.MaxBackoff)
			continue
		}
		backoff = time.Second
		started := time.Now()
		refused := s.keepAlive(ctx, secret)
		lived := time.Since(started)
		// A token at the end of its life can make keepAlive return at
		// once, again and again: pace the logins.
		wait := time.Second - lived
		if refused {
			if lived > 2*s.MaxBackoff {
				// The token served well: its end says nothing about the next.
				pace = time.Second
			}
			wait = pace - lived
			pace = min(pace*2, s.MaxBackoff)
		}
		if wait > 0 && !s.pause(ctx, wait) {
			return
		}
	}
}

// pause waits d before the next login. Nothing cuts it short but ctx; the
// callers waiting for a login are woken to decide whether to wait on.
func (s *Session) pause(ctx context.Context, d time.Duration) bool {
	s.mu.Lock()
	s.nextLogin = time.Now().Add(d)
	close(s.done)
	s.done = make(chan struct{})
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.nextLogin = time.Time{}
		s.mu.Unlock()
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// attempt performs one login, publishes its outcome and revokes the token
// it replaces if this session created that one.
func (s *Session) attempt(ctx context.Context) (*api.Secret, error) {
	lctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	s.retryAfter.reset()
	secret, err := s.login.Login(lctx, s.loginClient)
	if err == nil && (secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "") {
		err = errors.New("Vault returned no token")
	}
	if d := s.retryAfter.get(); err != nil && d > 0 {
		err = &retryLaterError{err: err, after: d}
	}
	s.obs.Login(err)

	s.mu.Lock()
	close(s.done)
	s.done = make(chan struct{})
	s.lastErr = err
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	replaced := s.owned
	s.owned = ""
	if s.login.CreatesToken() && !isBatch(secret.Auth.ClientToken) {
		s.owned = secret.Auth.ClientToken
	}
	s.client.SetToken(secret.Auth.ClientToken)
	s.hasTok = true
	s.refused = false
	s.logins++
	s.inUse.Store(&sent{token: secret.Auth.ClientToken, logins: s.logins})
	// A refusal of the old token must not end the new one's life.
	select {
	case <-s.kick:
	default:
	}
	s.setExpiry(secret.Auth.LeaseDuration)
	s.mu.Unlock()

	s.log.Info("logged in to Vault", "method", fmt.Sprintf("%T", s.login),
		"ttl", time.Duration(secret.Auth.LeaseDuration)*time.Second, "renewable", secret.Auth.Renewable)
	if replaced != "" && replaced != secret.Auth.ClientToken {
		s.revoke(ctx, replaced)
	}
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
// requested, the token file changes, or ctx ends. It reports whether a
// relogin request ended it.
func (s *Session) keepAlive(ctx context.Context, secret *api.Secret) (refused bool) {
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
			return false
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
			return false
		case <-s.kick:
			s.log.Info("Vault refused the token; logging in again")
			return true
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
				// Kept for the message Err gives once the token runs out;
				// until then the token works and a new login may succeed.
				s.mu.Lock()
				s.lastErr = fmt.Errorf("renew Vault token: %w", err)
				left := time.Until(s.expires)
				s.mu.Unlock()
				s.log.Warn("Vault token renewal failed; logging in again while the token lasts", "ttl_left", left.Round(time.Second), "error", err)
			} else {
				s.log.Info("Vault token reached its maximum TTL; logging in again")
			}
			return false
		case <-expiry:
			return false
		case <-poll.C:
			if now := s.fingerprint(); now != fp {
				s.log.Info("token file changed; reading it again")
				return false
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
