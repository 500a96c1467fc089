package config

import (
	"reflect"
)

// VarNames lists every variable the plugin reads: its own VAULT_KMS_* ones
// and the standard Vault ones. The chart's tests use it to prove that the
// chart sets no variable the binary would ignore.
func VarNames() []string {
	var names []string
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		names = append(names, Prefix+"_"+t.Field(i).Tag.Get("envconfig"))
	}
	for _, v := range StandardVaultVars {
		names = append(names, v[0])
	}
	return names
}
