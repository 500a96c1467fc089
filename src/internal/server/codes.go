package server

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// grpcCode maps an error from the core or Vault to the gRPC code the apiserver
// sees. The core's own errors come first; Vault's are read through their
// kind, as the metrics read them.
func grpcCode(err error) codes.Code {
	kind := vault.KindOf(err)
	switch {
	case kind == vault.DeadlineExceeded || kind == vault.Canceled:
		// Time running out is what matters, whatever else the error says.
	case errors.Is(err, kms.ErrInvalidInput):
		return codes.InvalidArgument
	case errors.Is(err, kms.ErrKeyNotConfigured):
		return codes.FailedPrecondition
	case errors.Is(err, kms.ErrNotReady):
		return codes.Unavailable
	case errors.Is(err, kms.ErrBadAnswer):
		return codes.Internal
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
