package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// Vault answers 403 alike for a token that is dead and for a live token
// whose policy lacks the path. Only the first is fixed by a new login; the
// second, answered with a login, turns every refused request into one (a
// KMS v1 apiserver relisting Secrets under a key the policy misses makes
// thousands). So a 403 is followed by a lookup of the refused token, one
// lookup shared by every caller refused with that token, whose "alive"
// verdict is believed for AliveFor.

// tokenCheck is one lookup of a refused token.
type tokenCheck struct {
	token string
	done  chan struct{} // closed when the fields below are set
	alive bool
	err   error // the lookup failed: no verdict
	ended time.Time
}

// fresh reports whether c still answers for its token; s.mu is held.
func (c *tokenCheck) fresh(aliveFor time.Duration) bool {
	select {
	case <-c.done:
	default:
		return true // under way: share it
	}
	if !c.alive && c.err == nil {
		return true // a dead token stays dead
	}
	return time.Since(c.ended) < aliveFor
}

// afterDenied decides what a 403 for the token a request went out with
// means. It returns nil when a new login replaced the token (the request is
// worth sending again), and otherwise the error to give the caller.
func (s *Session) afterDenied(ctx context.Context, used sent, denied error) error {
	if s.current().logins != used.logins {
		// A new token came since the request went out: try that one
		// rather than look up the old, which would also displace the
		// check of the token in use.
		return nil
	}
	alive, err := s.tokenAlive(ctx, used.token)
	switch {
	case err != nil:
		return fmt.Errorf("%w (could not tell a dead token from a policy denial: %v)", denied, err)
	case alive:
		return policyDenied(denied)
	}
	s.mu.Lock()
	if s.logins == used.logins {
		s.refused = true
	}
	s.mu.Unlock()
	if !s.login.CanLoginAgain() {
		return fmt.Errorf("%w: Vault no longer accepts the token given in VAULT_TOKEN (revoked or expired); give the plugin a valid token", denied)
	}
	if err := s.relogin(ctx, used.logins); err != nil {
		return fmt.Errorf("%w (login again: %v)", denied, err)
	}
	return nil
}

// tokenAlive asks Vault whether token is alive, sharing the lookup with
// concurrent callers and reusing a recent verdict.
func (s *Session) tokenAlive(ctx context.Context, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	s.mu.Lock()
	c := s.check
	if c == nil || c.token != token || !c.fresh(s.AliveFor) {
		c = &tokenCheck{token: token, done: make(chan struct{})}
		s.check = c
		// Not bound to ctx: other callers wait for this answer too.
		go s.lookUp(context.WithoutCancel(ctx), c)
	}
	s.mu.Unlock()
	select {
	case <-c.done:
		return c.alive, c.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// lookUp runs c's lookup-self with c's token.
func (s *Session) lookUp(ctx context.Context, c *tokenCheck) {
	defer close(c.done)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// A clone, not a copy: s.client serves other requests meanwhile.
	cl, err := s.client.Clone()
	if err == nil {
		cl.SetToken(c.token)
		_, err = cl.Auth().Token().LookupSelfWithContext(ctx)
	}
	c.ended = time.Now()
	switch KindOf(err) {
	case OK:
		c.alive = true
	case Denied:
		// A token whose policy lacks lookup-self (created without the
		// default policy) ends up here too; Run's pacing keeps the logins
		// this causes rare.
	default:
		c.err = fmt.Errorf("look up the refused token: %w", err)
	}
}

// PolicyError is a 403 for a token Vault still accepts: the plugin's policy
// lacks a capability on a path.
type PolicyError struct {
	Path       string // as in a policy: "transit/decrypt/old"
	Capability string // "update", "read", ...
	Err        error  // Vault's answer
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("Vault's policy for the plugin's token lacks %q on %q: add path %q { capabilities = [%q] } to the plugin's policy (%v)",
		e.Capability, e.Path, e.Path, e.Capability, e.Err)
}

func (e *PolicyError) Unwrap() error { return e.Err }

// policyDenied names the path and capability Vault's 403 was about when
// the answer says which; Vault's own message is kept underneath.
func policyDenied(denied error) error {
	var re *api.ResponseError
	if !errors.As(denied, &re) {
		return denied
	}
	u, err := url.Parse(re.URL)
	if err != nil || !strings.HasPrefix(u.Path, "/v1/") {
		return denied
	}
	path := strings.TrimPrefix(u.Path, "/v1/")
	if ns := strings.Trim(re.NamespacePath, "/"); ns != "" {
		path = strings.TrimPrefix(path, ns+"/")
	}
	return &PolicyError{Path: path, Capability: capability(re.HTTPMethod, u.Query()), Err: denied}
}

// capability is the policy capability a request of this method needs.
func capability(method string, query url.Values) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		if query.Get("list") == "true" {
			return "list"
		}
		return "read"
	case "LIST":
		return "list"
	case http.MethodDelete:
		return "delete"
	case http.MethodPatch:
		return "patch"
	}
	// PUT and POST: transit's encrypt and decrypt, which need update.
	return "update"
}

// withToken is a copy of c whose requests carry token. It keeps c's
// namespace, TLS settings and response callbacks, and leaves c's token as
// it is. Copying reads c's lock unguarded: c must not serve other
// goroutines meanwhile.
func withToken(c *api.Client, token string) *api.Client {
	return c.WithRequestCallbacks(func(r *api.Request) { r.ClientToken = token })
}
