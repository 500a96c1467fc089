package bed

import "github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"

// StartVault starts Vault with file storage (it keeps its data across
// Stop and Start) and prepares it as the README's "Prepare Vault" does:
// the transit engine, key, and policy (named policy) allowing the plugin
// to encrypt and decrypt with key and read it.
func (b *Bed) StartVault(key, policy string) *testvault.Server {
	b.Owner.Helper()
	b.Vault = testvault.Start(b.Owner, testvault.Options{Persistent: true})
	b.Vault.EnableTransit("transit", key)
	b.Vault.Policy(policy, testvault.KMSPolicy("transit", key))
	return b.Vault
}
