package vault_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// KindOfResponse reads a refusal's body to classify it; the client behind
// it must still read every byte. These bodies are the edges a real Vault
// does not send (a proxy's HTML page, a body larger than any refusal);
// TestVaultRequestOutcomeIsTheErrorKind in metrics covers Vault's own.
func TestKindOfResponseReadsTheRefusalAndPutsItBack(t *testing.T) {
	huge := `{"errors":["` + strings.Repeat("x", 2<<20) + ` requested version for encryption is higher than the latest key version"]}`
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   vault.Kind
	}{
		{"standby behind a rotation", 400, `{"errors":["requested version for encryption is higher than the latest key version"]}`, vault.Unavailable},
		{"bad ciphertext", 400, `{"errors":["invalid ciphertext: no prefix"]}`, vault.InvalidInput},
		{"batch refused whole, ahead of Vault", 400, `{"data":{"batch_results":[{"error":"requested version for encryption is higher than the latest key version"}]}}`, vault.Unavailable},
		{"batch refused whole, bad items", 400, `{"data":{"batch_results":[{"error":"cipher: message authentication failed"}]}}`, vault.InvalidInput},
		{"JSON limit", 500, `{"errors":["JSON array exceeds allowed element count"]}`, vault.InvalidInput},
		{"a proxy's page, not JSON", 502, "<html>Bad Gateway</html>", vault.Unavailable},
		{"not JSON, with Vault's limit message", 500, "JSON array exceeds allowed element count", vault.InvalidInput},
		{"empty refusal", 403, "", vault.Denied},
		// Too long to read whole: classified by the status alone.
		{"over the read limit", 400, huge, vault.InvalidInput},
		{"success is not read", 200, `{"errors":["JSON array exceeds allowed element count"]}`, vault.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &http.Response{StatusCode: tc.status, Body: io.NopCloser(strings.NewReader(tc.body))}
			if got := vault.KindOfResponse(res, nil); got != tc.want {
				t.Errorf("kind %v, want %v", got, tc.want)
			}
			rest, err := io.ReadAll(res.Body)
			if err != nil || !bytes.Equal(rest, []byte(tc.body)) {
				t.Errorf("the client reads %d bytes (%v) of a %d-byte body", len(rest), err, len(tc.body))
			}
		})
	}
	if got := vault.KindOfResponse(&http.Response{StatusCode: 503}, nil); got != vault.Unavailable {
		t.Errorf("a 503 without a body: kind %v, want unavailable", got)
	}
}
