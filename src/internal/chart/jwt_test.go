package chart

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// jwtSets render auth.method jwt: the DaemonSet with its projected token,
// the DaemonSet with a JWT file from a volume of the user's (a hosted
// control plane's or a SPIFFE agent's), and the static pod with a file on
// the node.
var jwtSets = []struct {
	name      string
	sets      []string
	static    bool
	wantFile  string
	projected bool
}{
	{name: "daemonset, projected token", sets: []string{"auth.method=jwt", "auth.audience=vault-kms", "auth.tokenExpirationSeconds=1200"},
		wantFile: "/var/run/secrets/vault-kms-plugin/token", projected: true},
	{name: "daemonset, file from a volume", sets: []string{"auth.method=jwt", "auth.mount=jwt-hcp", "auth.jwt.jwtFile=/var/lib/hcp-jwt/token",
		"extraVolumes[0].name=hcp-jwt", "extraVolumes[0].hostPath.path=/var/lib/hcp-jwt", "extraVolumes[0].hostPath.type=Directory",
		"extraVolumeMounts[0].name=hcp-jwt", "extraVolumeMounts[0].mountPath=/var/lib/hcp-jwt", "extraVolumeMounts[0].readOnly=true"},
		wantFile: "/var/lib/hcp-jwt/token"},
	{name: "static pod, file on the node", sets: []string{"auth.method=jwt", "staticPod.enabled=true", "auth.jwt.jwtFile=/var/lib/vault-kms-plugin/jwt/token"},
		static: true, wantFile: "/var/lib/vault-kms-plugin/jwt/token"},
}

// TestJWTRender: the plugin's own configuration code loads the env the
// chart gives, the JWT file it names is mounted, the projected token has
// the audience and lifetime asked for, nothing asks for TokenReview
// rights, and `helm lint --strict` is clean.
func TestJWTRender(t *testing.T) {
	for _, tc := range jwtSets {
		t.Run(tc.name, func(t *testing.T) {
			vals := withSet(t, valuesFrom(t, []string{"testdata/vault-values.yaml"}), tc.sets...)
			lintStrict(t, vals)
			r := render(t, vals)
			var spec corev1.PodSpec
			var c corev1.Container
			var env map[string]string
			if tc.static {
				pod := one[*corev1.Pod](t, r, "Pod")
				spec, c = pod.Spec, pod.Spec.Containers[0]
				env = map[string]string{}
				resolveEnv(t, c, env)
			} else {
				ds := r.daemonSet(t)
				spec, c = ds.Spec.Template.Spec, pluginContainer(t, ds)
				env = r.containerEnv(t, c)
			}
			for name, want := range map[string]string{
				"VAULT_KMS_AUTH_METHOD":   "jwt",
				"VAULT_KMS_AUTH_ROLE":     "vault-kms-plugin",
				"VAULT_KMS_SA_TOKEN_FILE": tc.wantFile,
			} {
				if env[name] != want {
					t.Errorf("%s = %q, want %q", name, env[name], want)
				}
			}
			checkMounted(t, spec, c, "VAULT_KMS_SA_TOKEN_FILE", env["VAULT_KMS_SA_TOKEN_FILE"])

			var projected *corev1.ServiceAccountTokenProjection
			for _, v := range spec.Volumes {
				if v.Projected != nil {
					for _, s := range v.Projected.Sources {
						if s.ServiceAccountToken != nil {
							projected = s.ServiceAccountToken
						}
					}
				}
			}
			switch {
			case tc.projected && projected == nil:
				t.Error("no projected service-account token")
			case tc.projected && (projected.Audience != "vault-kms" || projected.ExpirationSeconds == nil || *projected.ExpirationSeconds != 1200):
				t.Errorf("projected token %+v, want audience vault-kms and 1200s", projected)
			case !tc.projected && projected != nil:
				t.Errorf("a projected token %+v, though the JWT comes from %s", projected, tc.wantFile)
			}
			if n := len(all[any](r, "ClusterRoleBinding")); n != 0 {
				t.Errorf("%d ClusterRoleBindings: the jwt method needs no TokenReview rights", n)
			}

			cfg, err := loadEnv(t, env)
			if err != nil {
				t.Fatalf("the plugin rejects the chart's environment: %v", err)
			}
			if cfg.AuthMethod != "jwt" || cfg.SATokenFile != tc.wantFile {
				t.Errorf("plugin config: method %q, JWT file %q", cfg.AuthMethod, cfg.SATokenFile)
			}
			if len(cfg.Warnings()) != 0 {
				t.Errorf("the plugin warns of the chart's environment: %q", cfg.Warnings())
			}
		})
	}
}

// TestJWTRefuses: jwt values the chart cannot honour fail the install with
// a message that names the value and the fix.
func TestJWTRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		sets []string
		want string
	}{
		{"no role", []string{"auth.method=jwt", "auth.role="},
			"auth.method jwt needs auth.role: set it to the role on Vault's jwt auth mount"},
		{"static pod without a JWT file", []string{"auth.method=jwt", "staticPod.enabled=true"},
			"staticPod.enabled with auth.method jwt needs auth.jwt.jwtFile"},
		{"DaemonSet with an unmounted JWT file", []string{"auth.method=jwt", "auth.jwt.jwtFile=/var/lib/hcp-jwt/token"},
			"auth.jwt.jwtFile /var/lib/hcp-jwt/token is in no volume of the DaemonSet"},
		{"static pod with a JWT file in a shared directory", []string{"auth.method=jwt", "staticPod.enabled=true", "auth.jwt.jwtFile=/etc/kubernetes/jwt"},
			"auth.jwt.jwtFile: the chart would mount the node's directory /etc/kubernetes whole"},
		{"relative JWT file", []string{"auth.method=jwt", "auth.jwt.jwtFile=jwt/token"},
			"at '/auth/jwt/jwtFile'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := install(loadChart(t), withSet(t, valuesFrom(t, []string{"testdata/vault-values.yaml"}), tc.sets...), kubeVersion)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
