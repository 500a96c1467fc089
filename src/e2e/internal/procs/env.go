package procs

import (
	"os"
	"strings"
)

// Env is this process's environment without VAULT_* variables (which
// would point children at another Vault), plus extra.
func Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
