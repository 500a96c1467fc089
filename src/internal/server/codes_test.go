package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/vault/api"
	"google.golang.org/grpc/codes"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

func TestCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{&api.ResponseError{StatusCode: 403}, codes.PermissionDenied},
		{&api.ResponseError{StatusCode: 400}, codes.InvalidArgument},
		{&api.ResponseError{StatusCode: 404}, codes.FailedPrecondition},
		{&api.ResponseError{StatusCode: 503}, codes.Unavailable},
		{&api.ResponseError{StatusCode: 500}, codes.Unavailable},
		{&api.ResponseError{StatusCode: 429}, codes.Unavailable},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{kms.ErrNotReady, codes.Unavailable},
		{vault.ErrKeyNotFound, codes.FailedPrecondition},
		{errors.New("boom"), codes.Internal},
		// The core's verdicts, as its Status, Encrypt and Decrypt wrap them.
		{fmt.Errorf("%w: plaintext is 0 bytes", kms.ErrInvalidInput), codes.InvalidArgument},
		{fmt.Errorf("%w: data was encrypted with transit key %q", kms.ErrKeyNotConfigured, "other"), codes.FailedPrecondition},
		{fmt.Errorf("%w: %w", kms.ErrNotReady, vault.ErrKeyNotFound), codes.Unavailable},
		{fmt.Errorf("%w: %w", kms.ErrNotReady, &api.ResponseError{StatusCode: 403}), codes.Unavailable},
		{fmt.Errorf("%w: %w", kms.ErrNotReady, context.DeadlineExceeded), codes.DeadlineExceeded},
		{fmt.Errorf("encrypt with key %q: %w", "kube", kms.ErrBadAnswer), codes.Internal},
	} {
		if got := grpcCode(tc.err); got != tc.want {
			t.Errorf("grpcCode(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
