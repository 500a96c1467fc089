package vault

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/hashicorp/vault/api"
)

// Kind says what went wrong with a Vault call, in terms a caller can act
// on. KindOf is the one place that reads Vault's answers for it: the gRPC
// codes the apiserver sees and the outcome labels of the metrics both start
// from a Kind, so the two cannot tell different stories about one failure.
type Kind uint8

const (
	// OK is the kind of a nil error.
	OK Kind = iota
	// Unavailable: Vault did not answer, or answered that it cannot serve
	// now (sealed, standby, overloaded: 5xx). Retrying later can work.
	Unavailable
	// LimitExceeded: a rate-limit quota refused the request (429). Like
	// Unavailable, retrying later can work.
	LimitExceeded
	// DeadlineExceeded: the call ran out of time.
	DeadlineExceeded
	// Canceled: the caller gave up.
	Canceled
	// Denied: Vault refused the token (403): a policy lacks a capability,
	// or the token was revoked.
	Denied
	// InvalidInput: Vault refused what was sent (400), or one item of a
	// batch, such as a ciphertext that does not decrypt under the key.
	InvalidInput
	// NotFound: the key, or the path to it, does not exist.
	NotFound
	// Unexpected: Vault answered with a status the plugin has no use for.
	Unexpected
	// Internal: not a failure Vault reported, such as an answer the plugin
	// cannot read.
	Internal
)

// String is the kind's metrics label. Labels that existed before kinds did
// keep their values, which are those of the gRPC codes the kinds map to.
func (k Kind) String() string {
	switch k {
	case OK:
		return "ok"
	case Unavailable:
		return "unavailable"
	case LimitExceeded:
		return "limit_exceeded"
	case DeadlineExceeded:
		return "deadline_exceeded"
	case Canceled:
		return "canceled"
	case Denied:
		return "permission_denied"
	case InvalidInput:
		return "invalid_argument"
	case NotFound:
		return "not_found"
	case Unexpected:
		return "unknown"
	}
	return "internal"
}

// ErrKeyNotFound means the transit key does not exist.
var ErrKeyNotFound = errors.New("transit key not found")

// ItemError is Vault's verdict on one item of a batch, such as a ciphertext
// that does not decrypt.
type ItemError struct{ Msg string }

func (e *ItemError) Error() string { return e.Msg }

// KindOf classifies an error returned by this package, or by vault/api
// underneath it (a login's, for instance).
func KindOf(err error) Kind {
	var re *api.ResponseError
	var ne net.Error
	var ue *url.Error
	switch {
	case err == nil:
		return OK
	// Time running out is what matters, whatever else the error says.
	case errors.Is(err, context.DeadlineExceeded):
		return DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return Canceled
	case errors.As(err, new(*answerCutError)):
		return Unavailable
	case errors.Is(err, ErrKeyNotFound):
		return NotFound
	case aheadOfReplication(err):
		return Unavailable
	case batchTooLarge(err):
		// Whatever the status, resending the same request cannot help.
		return InvalidInput
	case errors.As(err, new(*ItemError)):
		return InvalidInput
	case errors.As(err, &re):
		return statusKind(re.StatusCode)
	case errors.As(err, &ne), errors.As(err, &ue):
		return Unavailable
	}
	return Internal
}

func statusKind(status int) Kind {
	switch {
	case status < 300:
		return OK
	case status == http.StatusForbidden:
		return Denied
	case status == http.StatusBadRequest:
		return InvalidInput
	case status == http.StatusNotFound:
		// Not InvalidInput: a 404 says the mount or the key is missing,
		// not that the DEK or ciphertext the apiserver sent is wrong. The
		// same request succeeds once an operator creates the key or mounts
		// transit at VAULT_KMS_TRANSIT_PATH, so it is a missing
		// precondition, reported like a transit key that does not exist.
		return NotFound
	case status == http.StatusTooManyRequests:
		return LimitExceeded
	case status >= 500:
		return Unavailable
	}
	return Unexpected
}

// versionAheadMsg is what transit says, with a 400, when asked to encrypt
// with a key version it does not have.
const versionAheadMsg = "requested version for encryption is higher than the latest key version"

// aheadOfReplication reports whether Vault refused a key version newer than
// the key it holds. The plugin only asks for versions Vault reported, so
// this is a standby (or performance replica) that has not caught up with a
// rotation yet: it passes, so it is Unavailable, not bad input. The kms core
// re-reads the key on an Encrypt error and the apiserver retries.
func aheadOfReplication(err error) bool {
	var ie *ItemError
	if errors.As(err, &ie) {
		return strings.Contains(ie.Msg, versionAheadMsg)
	}
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
		for _, msg := range re.Errors {
			if strings.Contains(msg, versionAheadMsg) {
				return true
			}
		}
	}
	return false
}

// batchTooLarge reports whether Vault refused a request for the size of its
// JSON body: Vault's listener limits (max_request_size, and
// max_json_array_element_count and its siblings, which Vault 1.21 reports
// as a 500 "JSON array exceeds allowed element count") or OpenBao's limit
// on the number of strings. A smaller batch passes; the same one never
// does, so it is not a Vault that cannot serve for now.
func batchTooLarge(err error) bool {
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	if re.StatusCode == http.StatusRequestEntityTooLarge {
		return true
	}
	for _, msg := range re.Errors {
		if strings.Contains(msg, "JSON") && (strings.Contains(msg, "exceeds") || strings.Contains(msg, "too many")) {
			return true
		}
	}
	return false
}
