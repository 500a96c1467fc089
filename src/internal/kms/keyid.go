package kms

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// keyID names one key version for the apiserver. It must change whenever
// the key material changes, and never come back: a key deleted and created
// again restarts at version 1, so the version's creation time and the Vault
// cluster are part of the hash. The readable prefix helps operators; the
// apiserver treats the whole string as opaque.
func keyID(scope string, k *vault.Key) string {
	h := sha256.New()
	for _, part := range []string{scope, k.Name, strconv.Itoa(k.LatestVersion), k.LatestCreated.UTC().Format("2006-01-02T15:04:05.999999999Z")} {
		// Length-prefix each part so that no two tuples hash alike.
		fmt.Fprintf(h, "%d:%s", len(part), part)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:32]
	id := fmt.Sprintf("%s/v%d/%s", k.Name, k.LatestVersion, sum)
	if len(id) > maxKeyIDLen {
		return sum
	}
	return id
}
