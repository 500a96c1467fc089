package bed

import (
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// StartPlugin starts the plugin (argv[0] with argv[1:], in env) and waits
// until liveURL, its /livez, answers: the socket serves. It does not wait
// for readiness (the Vault login). The plugin stops when the bed's owner
// ends; a test may stop it before.
func (b *Bed) StartPlugin(t testvault.TB, argv, env []string, liveURL string) *procs.Process {
	t.Helper()
	p := StartProc(t, "vault-kms-plugin", filepath.Join(b.LogDir, "plugin.log"), b.Dir, argv[0], argv[1:], env)
	b.Owner.Cleanup(func() { p.Stop(syscall.SIGTERM, 15*time.Second) })
	WaitFor(t, 30*time.Second, "plugin /livez", func() error {
		if !p.Running() {
			t.Fatal(exited(p, 20))
		}
		code, body, err := HTTPGet(liveURL)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	return p
}
