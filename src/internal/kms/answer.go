package kms

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadAnswer means Vault's answer was not what the request asked for.
// The server maps it to Internal: the caller sent nothing wrong.
var ErrBadAnswer = errors.New("unexpected answer from Vault")

// checkEncrypted refuses a transit ciphertext that is not of the pinned
// key version, or not one Decrypt would parse: the apiserver stores what
// Encrypt returns beside the snapshot's key_id, so a ciphertext of another
// version would be filed under the wrong key_id, and one Decrypt refuses
// would be a DEK lost. Transit honours key_version, so this only fails
// when something between the plugin and Vault rewrites answers. The error
// never quotes the ciphertext: logs must not hold it.
func checkEncrypted(key string, version int, ct string) error {
	prefix := "vault:v" + strconv.Itoa(version) + ":"
	if !strings.HasPrefix(ct, prefix) || !isTransit(ct) {
		return fmt.Errorf("encrypt with key %q: %w: the %d-byte ciphertext is not a transit ciphertext starting with %q, the pinned key version; "+
			"nothing was returned to the apiserver; check what sits between the plugin and VAULT_ADDR", key, ErrBadAnswer, len(ct), prefix)
	}
	return nil
}
