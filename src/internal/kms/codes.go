package kms

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"

	"github.com/hashicorp/vault/api"
	"google.golang.org/grpc/codes"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

const codesInvalidArgument = codes.InvalidArgument

// Code maps an error from the service or Vault to the gRPC code the
// apiserver sees.
func Code(err error) codes.Code {
	var re *api.ResponseError
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, ErrInvalidInput):
		return codes.InvalidArgument
	case errors.Is(err, ErrKeyNotConfigured):
		return codes.FailedPrecondition
	case errors.Is(err, ErrNotReady):
		return codes.Unavailable
	case errors.Is(err, vault.ErrKeyNotFound):
		return codes.FailedPrecondition
	case errors.As(err, new(*vault.ItemError)):
		return codes.InvalidArgument
	case errors.As(err, &re):
		switch {
		case re.StatusCode == http.StatusForbidden:
			return codes.PermissionDenied
		case re.StatusCode == http.StatusBadRequest:
			return codes.InvalidArgument
		case re.StatusCode == http.StatusNotFound:
			return codes.FailedPrecondition
		case re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500:
			return codes.Unavailable
		}
		return codes.Unknown
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) {
		return codes.Unavailable
	}
	return codes.Internal
}
