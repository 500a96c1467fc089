package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// A v1 apiserver calls the plugin on every Secret write: above debug, a
// successful call must leave no log line. The debug run shows that the
// calls would be seen if they were logged.
func TestSuccessfulCallsLogNothingAboveDebug(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	const calls = 50
	for _, tc := range []struct {
		level    string
		minLines int // new log lines the calls must leave
		maxLines int
	}{
		{"info", 0, 0},
		// Output arrives through a pipe: the last lines may still be on
		// their way, so debug need only show most of the 2*calls.
		{"debug", calls, 1 << 30},
	} {
		t.Run(tc.level, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "kms.sock")
			p := startPlugin(t, pluginEnv(v, sock, map[string]string{
				"VAULT_KMS_LOG_LEVEL": tc.level,
				// No refresh inside the window: only the calls can log.
				"VAULT_KMS_KEY_REFRESH_INTERVAL": "1h",
			}))
			waitHealthy(t, sock)
			c := dial(t, sock)
			before := lines(p.logs.String())
			for i := range calls {
				dek := fmt.Appendf(nil, "dek-%d", i)
				res, err := c.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: dek, Uid: "u"})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Decrypt(context.Background(), &kmsapi.DecryptRequest{Ciphertext: res.Ciphertext, KeyId: res.KeyId, Uid: "u"}); err != nil {
					t.Fatal(err)
				}
			}
			if n := lines(p.logs.String()) - before; n < tc.minLines || n > tc.maxLines {
				t.Fatalf("%d successful calls at level %s left %d log lines, want %d to %d:\n%s",
					2*calls, tc.level, n, tc.minLines, tc.maxLines, p.logs.String())
			}
		})
	}
}

func lines(s string) int { return strings.Count(s, "\n") }
