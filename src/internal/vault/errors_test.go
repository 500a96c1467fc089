package vault_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

func TestKindOf(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		err  error
		want vault.Kind
	}{
		{nil, vault.OK},
		{&api.ResponseError{StatusCode: 403}, vault.Denied},
		{&api.ResponseError{StatusCode: 400}, vault.InvalidInput},
		{&api.ResponseError{StatusCode: 404}, vault.NotFound},
		{&api.ResponseError{StatusCode: 429}, vault.LimitExceeded},
		{&api.ResponseError{StatusCode: 500}, vault.Unavailable},
		{&api.ResponseError{StatusCode: 503}, vault.Unavailable},
		{&api.ResponseError{StatusCode: 405}, vault.Unexpected},
		// A standby that has not replicated a rotation yet: it passes.
		{&api.ResponseError{StatusCode: 400, Errors: []string{"requested version for encryption is higher than the latest key version"}}, vault.Unavailable},
		{fmt.Errorf("encrypt with key %q version %d: %w", "kube", 3, &vault.ItemError{Msg: "requested version for encryption is higher than the latest key version"}), vault.Unavailable},
		{&api.ResponseError{StatusCode: 400, Errors: []string{"requested version for encryption is less than the minimum encryption key version"}}, vault.InvalidInput},
		// Vault 1.21's listener limits on JSON: a 500 that no retry passes.
		{&api.ResponseError{StatusCode: 500, Errors: []string{"JSON array exceeds allowed element count"}}, vault.InvalidInput},
		{&api.ResponseError{StatusCode: 413, Errors: []string{"http: request body too large"}}, vault.InvalidInput},
		{fmt.Errorf("read key %q: %w", "kube", vault.ErrKeyNotFound), vault.NotFound},
		{fmt.Errorf("decrypt with key %q: %w", "kube", &vault.ItemError{Msg: "cipher: message authentication failed"}), vault.InvalidInput},
		{&url.Error{Op: "Put", URL: "http://127.0.0.1:8200", Err: refused}, vault.Unavailable},
		{&url.Error{Op: "Put", URL: "http://127.0.0.1:8200", Err: context.DeadlineExceeded}, vault.DeadlineExceeded},
		{context.Canceled, vault.Canceled},
		{errors.New("Vault returned no data"), vault.Internal},
	} {
		if got := vault.KindOf(tc.err); got != tc.want {
			t.Errorf("KindOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// The metrics see raw HTTP exchanges, the rest of the plugin sees errors:
// one failure must get the same kind either way.
func TestKindOfResponseAgreesWithKindOf(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, status := range []int{200, 204, 400, 403, 404, 405, 412, 429, 500, 503} {
		res := &http.Response{StatusCode: status}
		var asError error
		if status >= 300 {
			asError = &api.ResponseError{StatusCode: status}
		}
		if got, want := vault.KindOfResponse(res, nil), vault.KindOf(asError); got != want {
			t.Errorf("HTTP %d: response kind %v, error kind %v", status, got, want)
		}
	}
	for _, err := range []error{refused, context.DeadlineExceeded, context.Canceled, errors.New("tls: handshake failure")} {
		got := vault.KindOfResponse(nil, err)
		want := vault.KindOf(&url.Error{Op: "Put", URL: "http://127.0.0.1:8200", Err: err})
		if got != want {
			t.Errorf("transport error %v: response kind %v, client error kind %v", err, got, want)
		}
	}
}

func TestKindLabelsAreDistinct(t *testing.T) {
	seen := map[string]vault.Kind{}
	for k := vault.OK; k <= vault.Internal; k++ {
		if other, dup := seen[k.String()]; dup {
			t.Errorf("kinds %d and %d share the label %q", other, k, k.String())
		}
		seen[k.String()] = k
	}
}

// A standby that has not replicated a rotation refuses the new version as
// the real Vault does when asked for the version after its latest: the
// error must say Unavailable, alone or as an item of a batch.
func TestEncryptAheadOfTheKeyIsUnavailable(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	ahead := v.Rotate("transit", "kube") + 1
	for _, tc := range []struct {
		name        string
		groupCommit bool
		callers     int
	}{
		{"alone", false, 1},
		{"in batches", true, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := transitAgainst(t, v.Addr, v.RootToken, tc.groupCommit, 5*time.Second)
			var itemErrs atomic.Int64
			var wg sync.WaitGroup
			for i := range tc.callers {
				wg.Go(func() {
					_, err := tr.Encrypt(context.Background(), "kube", ahead, fmt.Appendf(nil, "dek-%d", i))
					if kind := vault.KindOf(err); kind != vault.Unavailable {
						t.Errorf("encrypt with version %d: %v, kind %v; want %v", ahead, err, kind, vault.Unavailable)
					}
					if errors.As(err, new(*vault.ItemError)) {
						itemErrs.Add(1)
					}
				})
			}
			wg.Wait()
			if tc.groupCommit && itemErrs.Load() == 0 {
				t.Error("no caller got its error as a batch item: the batch path was not tested")
			}
		})
	}
}
