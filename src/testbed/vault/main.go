// Command vault is the real HashiCorp Vault server, built from the Go module
// proxy at a pinned version so integration tests talk to the real thing.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
