package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// jwtAudience is the audience the jwt values give the projected token and
// the Vault role binds: not the apiserver's own, which Vault's jwt method
// has no use for.
const jwtAudience = "vault-kms-jwt"

// jwtValues are the README's short values with auth.method jwt.
const jwtValues = `keyNames:
  - ` + oldKey + `
transitPath: /transit
addr: %s
auth:
  method: jwt
  audience: ` + jwtAudience + `
`

// TestJWTAuth: the plugin, configured by the chart's jwt values, logs in
// with a TokenRequest token that Vault checks offline against the
// apiserver's JWKS (no TokenReview, no kubernetes auth), and the apiserver
// encrypts Secrets through it. A token with another audience and an
// expired one are refused with Vault's reason, and no JWT is logged. One
// apiserver serves every case.
func TestJWTAuth(t *testing.T) {
	b := newTestBed(t, "")
	t.Cleanup(func() { b.collectLogs(t) })
	if b.PluginBin = os.Getenv("VAULT_KMS_E2E_PLUGIN_BIN"); b.PluginBin == "" {
		b.PluginBin = bed.BuildPlugin(t, b.Dir)
	}
	b.StartEtcd(t)
	b.StartVault(testvault.Options{}, oldKey, vaultRole)
	b.StartAPIServer(t, "")
	if _, err := b.Client.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	issuer, keys := b.serviceAccountIssuer(t)
	b.vaultJWTAuth(t, issuer, keys)

	// The chart's jwt render, run as the DaemonSet's pod would run it.
	values := bed.WriteFile(t, filepath.Join(b.LogDir, "jwt-values.yaml"), fmt.Sprintf(jwtValues, b.Vault.Addr))
	b.rendered = renderChart(t, values)
	bed.WriteFile(t, filepath.Join(b.LogDir, "rendered-jwt.yaml"), b.rendered.yamlOf(func(doc) bool { return true }))
	if slices.ContainsFunc(b.rendered.docs, func(d doc) bool { return d.kind == "ClusterRoleBinding" }) {
		t.Error("the jwt render binds system:auth-delegator: Vault's jwt method reviews no token")
	}
	b.pod = planPod(t, b.rendered, b.PluginBin, b.hostDir, filepath.Join(b.Dir, "pod"))
	for k, want := range map[string]string{"VAULT_KMS_AUTH_METHOD": "jwt", "VAULT_KMS_AUTH_ROLE": vaultRole, "VAULT_KMS_SA_TOKEN_FILE": b.pod.tokenFile} {
		if b.pod.env[k] != want {
			t.Errorf("the plugin gets %s=%q, want %q", k, b.pod.env[k], want)
		}
	}
	if b.pod.audience != jwtAudience {
		t.Errorf("the projected token's audience is %q, want auth.audience %q", b.pod.audience, jwtAudience)
	}
	sa := bed.WriteFile(t, filepath.Join(b.LogDir, "serviceaccount.yaml"), b.rendered.yamlOf(func(d doc) bool { return d.kind == "ServiceAccount" }))
	if out, err := b.Kubectl("apply", "-f", sa); err != nil {
		t.Fatalf("kubectl apply the chart's ServiceAccount: %v\n%s", err, out)
	}
	if t.Failed() {
		t.FailNow()
	}
	goodJWT := b.mintToken(t, b.pod)
	jwts := []string{goodJWT}

	t.Run("plugin_logs_in_and_the_apiserver_encrypts_through_it", func(t *testing.T) {
		b.startPlugin(t)
		b.waitPluginReady(t, 30*time.Second)
		out, err := b.probe(t, "v2")
		if err != nil || !strings.Contains(out, `healthz="ok"`) || !strings.Contains(out, "key_id="+oldKey+"/v1/") {
			t.Fatalf("probe: %v: %s", err, out)
		}
		if n := b.pluginMetrics(t).sum("vault_kms_plugin_vault_logins_total", map[string]string{"outcome": "ok"}); n < 1 {
			t.Fatalf("vault_kms_plugin_vault_logins_total{outcome=ok} = %v", n)
		}

		cfg := bed.WriteFile(t, filepath.Join(b.LogDir, "encryption-config-v2.yaml"), onNode(t, readmeEncryptionConfig(t), b.hostDir))
		b.StopAPIServer()
		b.StartAPIServer(t, cfg)
		if code, body, _ := b.APIGet("/readyz/kms-providers"); code != 200 {
			t.Fatalf("/readyz/kms-providers: %d %s", code, body)
		}
		b.createSecret(t, "jwt-encrypted")
		b.checkStoredV2(t, "jwt-encrypted", b.EtcdGet(t, testNS, "jwt-encrypted"), oldKey+"/v1/", oldKey+":vault:v1:")
		b.checkSecretsRead(t)
		t.Logf("Secret stored as KMS v2 ciphertext through the plugin's jwt login; probe: %s", out)
	})
	if t.Failed() {
		t.FailNow()
	}

	// The refusals, each shown by Vault itself and by a plugin started
	// with that JWT beside the one the apiserver uses.
	otherAud := b.kubectlToken(t, b.pod.saNS, b.pod.saName, "https://kubernetes.default.svc.cluster.local")
	expired := signExpired(t, b.PKI.SAKey, issuer, keys[0].kid, "system:serviceaccount:"+b.pod.saNS+":"+b.pod.saName, jwtAudience)
	jwts = append(jwts, otherAud, expired)
	for _, tc := range []struct {
		name, jwt string
		vault     string // Vault's own reason
		plugin    []string
	}{
		{"wrong_audience", otherAud, "invalid audience (aud) claim",
			[]string{"refused by Vault (HTTP 400)", "invalid audience (aud) claim", "bound_audiences", "VAULT_KMS_SA_TOKEN_FILE"}},
		{"expired", expired, "token is expired",
			[]string{"refused by Vault (HTTP 400)", "token is expired", "refreshes it"}},
	} {
		t.Run("refused_"+tc.name, func(t *testing.T) {
			c := b.Vault.Client()
			c.ClearToken()
			_, err := c.Logical().Write("auth/jwt/login", map[string]any{"role": vaultRole, "jwt": tc.jwt})
			if err == nil || !strings.Contains(err.Error(), tc.vault) {
				t.Fatalf("Vault login with the %s token: %v, want %q", tc.name, err, tc.vault)
			}
			body := b.refusedPlugin(t, tc.name, tc.jwt)
			for _, w := range tc.plugin {
				if !strings.Contains(body, w) {
					t.Errorf("the plugin's /readyz says %q; want it to say %q", body, w)
				}
			}
			t.Logf("the plugin with the %s token: %s", tc.name, body)
		})
	}

	t.Run("no_JWT_in_the_logs", func(t *testing.T) {
		b.saveVaultLog()
		for _, name := range []string{"plugin.log", "vault.log"} {
			raw, err := os.ReadFile(filepath.Join(b.LogDir, name))
			if err != nil {
				t.Fatal(err)
			}
			for i, jwt := range jwts {
				// The signature alone identifies the token.
				if sig := jwt[strings.LastIndex(jwt, ".")+1:]; strings.Contains(string(raw), sig) {
					t.Errorf("%s holds JWT %d", name, i)
				}
			}
		}
	})
}

// jwk is one key of the apiserver's JWKS.
type jwk struct {
	kid, pem string
}

// serviceAccountIssuer reads the apiserver's OIDC discovery document and
// JWKS, as the admin, and returns the issuer and its keys as PEM: what an
// operator copies into Vault so that Vault never calls the apiserver.
func (b *testBed) serviceAccountIssuer(t *testing.T) (string, []jwk) {
	t.Helper()
	code, body, err := b.APIGet("/.well-known/openid-configuration")
	if err != nil || code != 200 {
		t.Fatalf("GET /.well-known/openid-configuration: %d %v %s", code, err, body)
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	must(t, json.Unmarshal([]byte(body), &disc))
	code, body, err = b.APIGet("/openid/v1/jwks")
	if err != nil || code != 200 {
		t.Fatalf("GET /openid/v1/jwks: %d %v %s", code, err, body)
	}
	var set struct {
		Keys []struct {
			Kty, Crv, Kid, X, Y string
		} `json:"keys"`
	}
	must(t, json.Unmarshal([]byte(body), &set))
	var keys []jwk
	for _, k := range set.Keys {
		if k.Kty != "EC" || k.Crv != "P-256" {
			t.Fatalf("JWKS key %s is %s %s; the bed's signing key is EC P-256", k.Kid, k.Kty, k.Crv)
		}
		x, errX := base64.RawURLEncoding.DecodeString(k.X)
		y, errY := base64.RawURLEncoding.DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			t.Fatalf("JWKS key %s: bad coordinates", k.Kid)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		must(t, err)
		der, err := x509.MarshalPKIXPublicKey(pub)
		must(t, err)
		keys = append(keys, jwk{k.Kid, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
	}
	if disc.Issuer == "" || len(keys) == 0 {
		t.Fatalf("issuer %q with %d keys", disc.Issuer, len(keys))
	}
	t.Logf("service-account issuer %s (jwks_uri %s): %d key(s)", disc.Issuer, disc.JWKSURI, len(keys))
	return disc.Issuer, keys
}

// vaultJWTAuth sets up Vault's jwt method as the README does: the
// issuer's keys given as PEM (Vault fetches nothing), and the plugin's role
// bound to the chart's service account and the values' audience.
func (b *testBed) vaultJWTAuth(t *testing.T, issuer string, keys []jwk) {
	t.Helper()
	if err := b.Vault.Client().Sys().EnableAuthWithOptions("jwt", &api.EnableAuthOptions{Type: "jwt"}); err != nil {
		t.Fatal(err)
	}
	var pems []string
	for _, k := range keys {
		pems = append(pems, k.pem)
	}
	b.Vault.Write("auth/jwt/config", map[string]any{"jwt_validation_pubkeys": pems, "bound_issuer": issuer})
	b.Vault.Write("auth/jwt/role/"+vaultRole, map[string]any{
		"role_type":       "jwt",
		"bound_audiences": []string{jwtAudience},
		"bound_subject":   "system:serviceaccount:" + roleSANS + ":" + roleSA,
		"user_claim":      "sub",
		"token_policies":  []string{vaultRole},
		"token_ttl":       "1h",
		"token_max_ttl":   "24h",
	})
}

// kubectlToken is `kubectl create token` for a service account with one
// audience: a TokenRequest, as an operator would run it.
func (b *testBed) kubectlToken(t *testing.T, ns, sa, aud string) string {
	t.Helper()
	out, err := b.Kubectl("create", "token", sa, "-n", ns, "--audience", aud, "--duration", "1h")
	if err != nil {
		t.Fatalf("kubectl create token %s -n %s --audience %s: %v\n%s", sa, ns, aud, err, out)
	}
	return strings.TrimSpace(out)
}

// signExpired signs, with the apiserver's service-account key, a token
// like the apiserver's own for subject and audience that expired a minute
// ago: TokenRequest gives none shorter than ten minutes.
func signExpired(t *testing.T, keyFile, issuer, kid, subject, audience string) string {
	t.Helper()
	raw, err := os.ReadFile(keyFile)
	must(t, err)
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatalf("%s holds no PEM", keyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	must(t, err)
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("%s is a %T, want an EC key", keyFile, parsed)
	}
	enc := func(v any) string {
		j, err := json.Marshal(v)
		must(t, err)
		return base64.RawURLEncoding.EncodeToString(j)
	}
	now := time.Now()
	signed := enc(map[string]string{"alg": "ES256", "kid": kid}) + "." + enc(map[string]any{
		"iss": issuer, "sub": subject, "aud": []string{audience},
		"iat": now.Add(-time.Hour).Unix(), "nbf": now.Add(-time.Hour).Unix(), "exp": now.Add(-time.Minute).Unix(),
	})
	sum := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	must(t, err)
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// refusedPlugin starts another plugin with the pod's environment but its
// own socket, health port and JWT file holding jwt, and returns what its
// /readyz says once the login has been refused.
func (b *testBed) refusedPlugin(t *testing.T, name, jwt string) string {
	t.Helper()
	dir := filepath.Join(b.Dir, "refused-"+name)
	must(t, os.MkdirAll(dir, 0o700))
	tokenFile := bed.WriteFile(t, filepath.Join(dir, "token"), jwt)
	health := fmt.Sprintf("127.0.0.1:%d", testvault.FreePort(t))
	env := map[string]string{}
	for k, v := range b.pod.env {
		env[k] = v
	}
	env["VAULT_KMS_LISTEN"] = "unix://" + filepath.Join(dir, "sock", "socket.sock")
	env["VAULT_KMS_HEALTH_ADDR"] = health
	env["VAULT_KMS_SA_TOKEN_FILE"] = tokenFile
	must(t, os.MkdirAll(filepath.Join(dir, "sock"), 0o700))
	var environ []string
	for _, k := range sortedKeys(env) {
		environ = append(environ, k+"="+env[k])
	}
	p := b.StartPlugin(t, b.pod.argv, environ, "http://"+health+"/livez")
	defer p.Stop(syscall.SIGTERM, 15*time.Second)
	var said string
	bed.WaitFor(t, 20*time.Second, "the refused login on /readyz", func() error {
		code, body, err := bed.HTTPGet("http://" + health + "/readyz")
		if err != nil {
			return err
		}
		said = strings.TrimSpace(body)
		if code == 200 || !strings.Contains(said, "refused by Vault") {
			return fmt.Errorf("%d %s", code, said)
		}
		return nil
	})
	return said
}
