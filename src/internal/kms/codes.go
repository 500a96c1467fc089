package kms

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// Code maps an error from the service or Vault to the gRPC code the
// apiserver sees.
func Code(err error) codes.Code {
	kind := vault.KindOf(err)
	switch {
	case kind == vault.DeadlineExceeded || kind == vault.Canceled:
		// Time running out is what matters, whatever else the error says.
	case errors.Is(err, ErrInvalidInput):
		return codes.InvalidArgument
	case errors.Is(err, ErrKeyNotConfigured):
		return codes.FailedPrecondition
	case errors.Is(err, ErrNotReady):
		return codes.Unavailable
	}
	return kindCode(kind)
}

// kindCode gives each kind of Vault failure its gRPC code. The apiserver
// retries Unavailable; a missing key is a precondition an operator must
// fix, like a key missing from VAULT_KMS_KEY_NAMES.
func kindCode(k vault.Kind) codes.Code {
	switch k {
	case vault.OK:
		return codes.OK
	case vault.Unavailable, vault.LimitExceeded:
		return codes.Unavailable
	case vault.DeadlineExceeded:
		return codes.DeadlineExceeded
	case vault.Canceled:
		return codes.Canceled
	case vault.Denied:
		return codes.PermissionDenied
	case vault.InvalidInput:
		return codes.InvalidArgument
	case vault.NotFound:
		return codes.FailedPrecondition
	case vault.Unexpected:
		return codes.Unknown
	}
	return codes.Internal
}
