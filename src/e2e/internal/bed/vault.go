package bed

import "github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"

// StartVault starts Vault (o: a dev server, or file storage that keeps
// its data across Stop and Start) and prepares it as the README's "Prepare
// Vault" does: the transit engine, key, and a policy named policy that
// lets the plugin encrypt and decrypt with key and read it.
func (b *Bed) StartVault(o testvault.Options, key, policy string) *testvault.Server {
	b.Owner.Helper()
	b.Vault = testvault.Start(b.Owner, o)
	b.Vault.EnableTransit("transit", key)
	b.Vault.Policy(policy, testvault.KMSPolicy("transit", key))
	return b.Vault
}
