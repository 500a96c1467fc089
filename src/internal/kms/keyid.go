package kms

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// keyID names one key version for the apiserver, which makes a new DEK
// whenever the key_id changes and trusts its cached DEK while it does not.
// The rule: equal key material gives an equal key_id, and new material a
// new one.
//
//   - Equal across every node, every server and replica of the Vault
//     cluster, a DR secondary after its promotion, Vault and plugin
//     restarts: it hashes only what Vault replicates with the key (its
//     name and version, and that version's creation time) and where the
//     plugin is configured to find it (namespace and mount, from scope).
//     The Vault cluster's id is left out: it differs between clusters that
//     hold the same key, so nodes on different replicas would disagree and
//     every apiserver would roll its DEKs after a failover.
//   - New when the material is: a rotation is a new version, and a key
//     deleted and created again restarts at version 1 with a new creation
//     time. Transit gives a symmetric key's creation time in whole
//     seconds, so a key recreated within the same second as the version it
//     replaces would repeat its key_id; nobody deletes a key by accident
//     that fast.
//
// The readable prefix helps operators; the apiserver treats the whole
// string as opaque.
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
