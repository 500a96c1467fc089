package config

// VarNames lists every variable the plugin reads: its own VAULT_KMS_* ones
// and the standard Vault ones. The chart's tests use it to prove that the
// chart sets no variable the binary would ignore.
func VarNames() []string {
	names := pluginVarNames()
	for _, v := range StandardVaultVars {
		names = append(names, v[0])
	}
	return names
}
