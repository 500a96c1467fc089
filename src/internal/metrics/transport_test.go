package metrics_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/metrics"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// A failed Vault request is counted under the outcome of the kind the rest
// of the plugin gives the same failure (and from it, the gRPC code): the
// metrics and the apiserver must not tell two stories about one failure.
// The refusals come from a real Vault, including those that only their
// message tells apart from their status.
func TestVaultRequestOutcomeIsTheErrorKind(t *testing.T) {
	v := testvault.Start(t, testvault.Options{ExtraListener: "max_json_array_element_count = 2"})
	v.EnableTransit("transit", "kube")
	v.Policy("nothing", `path "sys/nothing" { capabilities = ["read"] }`)
	unprivileged := v.Token(&api.TokenCreateRequest{Policies: []string{"nothing"}, NoDefaultPolicy: true})
	plaintext := base64.StdEncoding.EncodeToString([]byte("dek"))
	batchOf := func(n int) []map[string]any {
		items := make([]map[string]any, n)
		for i := range items {
			items[i] = map[string]any{"plaintext": plaintext}
		}
		return items
	}

	for _, tc := range []struct {
		name      string
		addr      string // "" for Vault's main listener
		token     string // "" for root
		method    string
		path      string
		body      map[string]any
		operation string
		want      vault.Kind
	}{
		{name: "encrypt", method: "PUT", path: "transit/encrypt/kube", body: map[string]any{"plaintext": plaintext},
			operation: "encrypt", want: vault.OK},
		// A standby that has not replicated a rotation answers exactly
		// this: a 400 the plugin retries, as it would an unavailable Vault.
		{name: "key version ahead of Vault", method: "PUT", path: "transit/encrypt/kube", body: map[string]any{"plaintext": plaintext, "key_version": 7},
			operation: "encrypt", want: vault.Unavailable},
		{name: "batch with every item ahead of Vault", method: "PUT", path: "transit/encrypt/kube",
			body:      map[string]any{"batch_input": []map[string]any{{"plaintext": plaintext, "key_version": 7}}},
			operation: "encrypt", want: vault.Unavailable},
		{name: "ciphertext the key does not open", method: "PUT", path: "transit/decrypt/kube", body: map[string]any{"ciphertext": "vault:v1:" + plaintext},
			operation: "decrypt", want: vault.InvalidInput},
		// Vault 1.21 answers a JSON body over the listener's limits with a
		// 500 that no retry passes.
		{name: "batch over the listener's JSON limit", addr: v.ExtraAddr, method: "PUT", path: "transit/encrypt/kube", body: map[string]any{"batch_input": batchOf(3)},
			operation: "encrypt", want: vault.InvalidInput},
		{name: "token without the policy", token: unprivileged, method: "PUT", path: "transit/encrypt/kube", body: map[string]any{"plaintext": plaintext},
			operation: "encrypt", want: vault.Denied},
		{name: "missing key", method: "GET", path: "transit/keys/missing",
			operation: "read_key", want: vault.NotFound},
		{name: "nothing listening", addr: fmt.Sprintf("http://127.0.0.1:%d", testvault.FreePort(t)), method: "GET", path: "transit/keys/kube",
			operation: "read_key", want: vault.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New("test")
			cfg := v.Config()
			cfg.HttpClient.Transport = m.Transport(cfg.HttpClient.Transport)
			c, err := api.NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.addr != "" {
				if err := c.SetAddress(tc.addr); err != nil {
					t.Fatal(err)
				}
			}
			c.SetToken(v.RootToken)
			if tc.token != "" {
				c.SetToken(tc.token)
			}

			err = send(c, tc.method, tc.path, tc.body)
			kind := vault.KindOf(err)
			if kind != tc.want {
				t.Fatalf("the request's error %v is of kind %v; the case expects %v", err, kind, tc.want)
			}
			want := map[string]float64{tc.operation + "/" + kind.String(): 1}
			if got := vaultRequests(t, m.Registry); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("vault_requests_total = %v, want %v (the kind of the client's error)", got, want)
			}
		})
	}
}

// send makes the request the way the plugin's transit calls do, through
// RawRequestWithContext, and returns the error the plugin makes of it: the
// client's, or for a batch Vault refused whole, the first item's verdict
// (transit.go's batchVerdicts hands each caller its item's).
func send(c *api.Client, method, path string, body map[string]any) error {
	req := c.NewRequest(method, "/v1/"+path)
	if body != nil {
		if err := req.SetJSONBody(body); err != nil {
			return err
		}
	}
	res, err := c.RawRequestWithContext(context.Background(), req)
	if res == nil {
		return err
	}
	defer res.Body.Close()
	if err == nil && res.StatusCode != http.StatusOK && res.StatusCode != http.StatusNoContent {
		return fmt.Errorf("HTTP %d without an error", res.StatusCode)
	}
	if res.StatusCode == http.StatusBadRequest {
		if sec, perr := api.ParseSecret(res.Body); perr == nil && sec != nil {
			if items, ok := sec.Data["batch_results"].([]any); ok && len(items) > 0 {
				verdict, _ := items[0].(map[string]any)
				return &vault.ItemError{Msg: fmt.Sprint(verdict["error"])}
			}
		}
	}
	return err
}
