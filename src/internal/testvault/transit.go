package testvault

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// SetenvTB is a TB that can set environment variables for its own
// duration, as vault/api reads VAULT_ADDR and VAULT_TOKEN from there.
type SetenvTB interface {
	TB
	Setenv(key, value string)
}

// Transit returns the plugin's transit calls on s's mount "transit" with
// the root token, and a token session that runs until the test ends: the
// Vault half of the plugin, wired as serve wires it, for the tests of the
// parts above it.
func (s *Server) Transit(t SetenvTB, groupCommit bool) *vault.Transit {
	t.Helper()
	t.Setenv("VAULT_ADDR", s.Addr)
	t.Setenv("VAULT_TOKEN", s.RootToken)
	c, err := vault.NewClient(2*time.Second, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sess := vault.NewSession(c, vault.StaticToken{Token: s.RootToken}, 2*time.Second, log, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sess.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return vault.NewTransit(sess, "transit", 2*time.Second, groupCommit)
}
