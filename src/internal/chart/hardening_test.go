package chart

import (
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
)

// TestSharedHostDirsRefused renders every directory the binary calls
// shared (config.SharedHostDirs and SharedHostTrees, one level below each
// tree too) as the directory the chart would mount whole, for each setting
// that names one, and expects the refusal naming the setting and the fix.
func TestSharedHostDirsRefused(t *testing.T) {
	dirs := append([]string{}, config.SharedHostDirs...)
	for _, tree := range config.SharedHostTrees {
		dirs = append(dirs, tree, tree+"/plugin")
	}
	settings := []struct {
		setting string
		values  func(dir string) string
	}{
		{"auth.token.tokenFile", func(dir string) string {
			return "auth:\n  method: token\n  token:\n    tokenFile: " + strings.TrimSuffix(dir, "/") + "/vault-token\n"
		}},
		{"auth.approle.secretIdFile", func(dir string) string {
			return "auth:\n  method: approle\n  approle:\n    roleId: r\n    secretIdFile: " + strings.TrimSuffix(dir, "/") + "/secret-id\n"
		}},
		{"socket.hostDir", func(dir string) string { return "socket:\n  hostDir: " + dir + "\n" }},
		{"ca-cert", func(dir string) string { return "ca-cert: " + strings.TrimSuffix(dir, "/") + "/vault-ca.pem\n" }},
		{"auth.cert.certFile", func(dir string) string {
			return "auth:\n  method: cert\n  cert:\n    certFile: " + strings.TrimSuffix(dir, "/") + "/tls.crt\n    keyFile: /var/lib/vault-kms-plugin/tls/tls.key\n"
		}},
		{"auth.cert.keyFile", func(dir string) string {
			return "auth:\n  method: cert\n  cert:\n    certFile: /var/lib/vault-kms-plugin/tls/tls.crt\n    keyFile: " + strings.TrimSuffix(dir, "/") + "/tls.key\n"
		}},
		{"auth.kubernetes.jwtFile", func(dir string) string {
			return "staticPod:\n  enabled: true\nauth:\n  method: kubernetes\n  kubernetes:\n    jwtFile: " + strings.TrimSuffix(dir, "/") + "/jwt\n"
		}},
	}
	for _, s := range settings {
		for _, dir := range dirs {
			t.Run(s.setting+" "+dir, func(t *testing.T) {
				vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
				for k, v := range valuesYAML(t, s.values(dir)) {
					vals[k] = v
				}
				_, err := install(loadChart(t), vals, kubeVersion)
				if err == nil {
					t.Fatalf("%s in %s was accepted", s.setting, dir)
				}
				for _, want := range []string{s.setting + ": the chart would mount the node's directory", "a directory of its own"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
			})
		}
	}
	// A directory of its own, even next to a shared one, is mounted.
	for _, file := range []string{"/var/lib/vault-kms-plugin/token", "/run/vault-agent/token", "/etc/kubernetes/vault/token", "/var/lib/kubelet-vault/token"} {
		t.Run("accepted "+file, func(t *testing.T) {
			vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
			vals["auth"] = valuesYAML(t, "method: token\ntoken:\n  tokenFile: "+file+"\n")
			r := render(t, vals)
			ds := r.daemonSet(t)
			want := file[:strings.LastIndex(file, "/")]
			if !slices.ContainsFunc(ds.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
				return v.HostPath != nil && v.HostPath.Path == want && *v.HostPath.Type == corev1.HostPathDirectory
			}) {
				t.Errorf("volumes %+v, want the hostPath %s", ds.Spec.Template.Spec.Volumes, want)
			}
		})
	}
}

// TestSocketOwnership: socket.mode and socket.group reach the plugin as
// VAULT_KMS_SOCKET_MODE and VAULT_KMS_SOCKET_GROUP, which it accepts, in
// the DaemonSet and the static pod; a group the mode gives no access to,
// and a mode that is not octal, are refused.
func TestSocketOwnership(t *testing.T) {
	for _, tc := range []struct {
		name      string
		socket    string
		wantMode  string
		wantGroup string
		refused   string
	}{
		{"default", "{}", "0600", "", ""},
		{"talos", "{mode: \"0660\", group: 65534}", "0660", "65534", ""},
		{"root group", "{mode: \"0600\", group: 0}", "0600", "0", ""},
		{"group without access", "{group: 65534}", "", "", "socket.group 65534 gets no access with socket.mode \"0600\""},
		{"mode not octal", "{mode: \"0690\"}", "", "", "/socket/mode"},
		{"group not a number", "{group: nobody}", "", "", "/socket/group"},
	} {
		for _, static := range []bool{false, true} {
			t.Run(tc.name+" static="+strconv.FormatBool(static), func(t *testing.T) {
				vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
				sock := valuesYAML(t, "s: "+tc.socket)["s"].(map[string]any)
				sock["hostDir"], sock["file"] = "/var/run/kmsplugin", "socket.sock"
				vals["socket"] = sock
				if static {
					asStaticPod(vals)
				}
				rel, err := install(loadChart(t), vals, kubeVersion)
				if tc.refused != "" {
					if err == nil || !strings.Contains(err.Error(), tc.refused) {
						t.Fatalf("error %v; want it to contain %q", err, tc.refused)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				r := decodeRelease(t, rel)
				var env map[string]string
				if static {
					pod := staticPod(t, r)
					env = map[string]string{}
					resolveEnv(t, pod.Spec.Containers[0], env)
				} else {
					env = r.containerEnv(t, pluginContainer(t, r.daemonSet(t)))
				}
				if env["VAULT_KMS_SOCKET_MODE"] != tc.wantMode || env["VAULT_KMS_SOCKET_GROUP"] != tc.wantGroup {
					t.Fatalf("mode %q group %q; want %q %q", env["VAULT_KMS_SOCKET_MODE"], env["VAULT_KMS_SOCKET_GROUP"], tc.wantMode, tc.wantGroup)
				}
				cfg, err := loadEnv(t, env)
				if err != nil {
					t.Fatalf("the plugin refuses the chart's socket settings: %v", err)
				}
				wantGID := -1
				if tc.wantGroup != "" {
					wantGID, _ = strconv.Atoi(tc.wantGroup)
				}
				if cfg.SocketGID() != wantGID || cfg.SocketMode != tc.wantMode {
					t.Errorf("plugin: gid %d mode %s; want %d %s", cfg.SocketGID(), cfg.SocketMode, wantGID, tc.wantMode)
				}
			})
		}
	}
}

// asStaticPod turns vals into a static pod's, with a token file for auth
// since the static pod has no service-account token.
func asStaticPod(vals map[string]any) {
	vals["staticPod"] = map[string]any{"enabled": true}
	vals["auth"] = map[string]any{"method": "token", "token": map[string]any{"tokenFile": "/var/lib/vault-kms-plugin/token"}}
}

// staticPod is the only Pod of a static-pod render.
func staticPod(t testing.TB, r *rendered) *corev1.Pod {
	t.Helper()
	return one[*corev1.Pod](t, r, "Pod")
}

// TestStatusGrace: statusGrace becomes VAULT_KMS_STATUS_GRACE in the
// DaemonSet and the static pod, only when set; a value that is not a Go
// duration is refused.
func TestStatusGrace(t *testing.T) {
	for _, tc := range []struct {
		grace   any
		want    string
		refused bool
	}{
		{"", "", false}, {"45s", "45s", false}, {"1m30s", "1m30s", false}, {"1.5m", "1.5m", false},
		{"45", "", true}, {"soon", "", true}, {45, "", true},
	} {
		for _, static := range []bool{false, true} {
			t.Run(fmtAny(tc.grace)+" static="+strconv.FormatBool(static), func(t *testing.T) {
				vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
				vals["statusGrace"] = tc.grace
				if static {
					asStaticPod(vals)
				}
				rel, err := install(loadChart(t), vals, kubeVersion)
				if tc.refused {
					if err == nil || !strings.Contains(err.Error(), "statusGrace") {
						t.Fatalf("statusGrace %v: error %v, want a refusal naming statusGrace", tc.grace, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				r := decodeRelease(t, rel)
				env := map[string]string{}
				if static {
					resolveEnv(t, staticPod(t, r).Spec.Containers[0], env)
				} else {
					env = r.containerEnv(t, pluginContainer(t, r.daemonSet(t)))
				}
				got, set := env["VAULT_KMS_STATUS_GRACE"]
				if got != tc.want || set != (tc.want != "") {
					t.Errorf("VAULT_KMS_STATUS_GRACE = %q (set %v), want %q", got, set, tc.want)
				}
			})
		}
	}
}

func fmtAny(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return "number"
}

// TestAuthDelegatorBinding: the system:auth-delegator binding comes with
// the kubernetes method unless rbac.authDelegator is false, and never with
// another method.
func TestAuthDelegatorBinding(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values string
		want   int
	}{
		{"kubernetes, default", "", 1},
		{"kubernetes, off", "rbac: {authDelegator: false}", 0},
		{"approle", "auth: {method: approle, approle: {roleId: r, secretIdFile: /var/lib/vault-kms-plugin/secret-id}}", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
			for k, v := range valuesYAML(t, tc.values) {
				vals[k] = v
			}
			r := render(t, vals)
			bindings := all[*rbacv1.ClusterRoleBinding](r, "ClusterRoleBinding")
			if len(bindings) != tc.want {
				t.Fatalf("%d ClusterRoleBindings, want %d", len(bindings), tc.want)
			}
			for _, b := range bindings {
				if b.RoleRef.Name != "system:auth-delegator" {
					t.Errorf("binding to %s", b.RoleRef.Name)
				}
			}
		})
	}
}

// TestGoMemLimit: with a memory limit, the container's GOMEMLIMIT, as the
// kubelet resolves it, is a byte count Go reads, between 90% and 96% of the
// limit; without a limit, or with the user's own GOMEMLIMIT, the chart sets
// none.
func TestGoMemLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		resources string
		extraEnv  string
		want      string
	}{
		{"chart default 128Mi", "", "", "128000000"},
		{"64Mi", "{limits: {memory: 64Mi}}", "", "64000000"},
		{"1Gi", "{limits: {memory: 1Gi}}", "", "1024000000"},
		{"not a whole MiB", "{limits: {memory: 100M}}", "", "96000000"},
		{"no limit", "{limits: {memory: null}}", "", ""},
		{"the user's own", "", "[{name: GOMEMLIMIT, value: 100MiB}]", "100MiB"},
	} {
		for _, static := range []bool{false, true} {
			t.Run(tc.name+" static="+strconv.FormatBool(static), func(t *testing.T) {
				vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
				if tc.resources != "" {
					vals["resources"] = valuesYAML(t, "r: "+tc.resources)["r"]
				}
				if tc.extraEnv != "" {
					vals["extraEnv"] = valuesYAML(t, "e: "+tc.extraEnv)["e"]
				}
				if static {
					asStaticPod(vals)
				}
				r := render(t, vals)
				var c corev1.Container
				if static {
					c = staticPod(t, r).Spec.Containers[0]
				} else {
					c = pluginContainer(t, r.daemonSet(t))
				}
				n := 0
				for _, e := range c.Env {
					if e.Name == "GOMEMLIMIT" {
						n++
					}
				}
				if want := min(len(tc.want), 1); n != want {
					t.Fatalf("GOMEMLIMIT is set %d times, want %d", n, want)
				}
				env := map[string]string{}
				resolveEnv(t, c, env)
				if env["GOMEMLIMIT"] != tc.want {
					t.Fatalf("GOMEMLIMIT = %q, want %q", env["GOMEMLIMIT"], tc.want)
				}
				if got := goRuntimeMemoryLimit(t, env["GOMEMLIMIT"]); tc.want != "" && tc.extraEnv == "" && strconv.FormatInt(got, 10) != tc.want {
					t.Errorf("the Go runtime's memory limit with GOMEMLIMIT=%s is %d", env["GOMEMLIMIT"], got)
				}
				if limit, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && tc.extraEnv == "" {
					// Go reads a plain number as bytes.
					bytes, err := strconv.ParseInt(env["GOMEMLIMIT"], 10, 64)
					if err != nil {
						t.Fatalf("GOMEMLIMIT %q is not a byte count: %v", env["GOMEMLIMIT"], err)
					}
					if frac := float64(bytes) / float64(limit.Value()); frac < 0.90 || frac > 0.96 {
						t.Errorf("GOMEMLIMIT is %.3f of the limit %s, want 0.90 to 0.96", frac, limit.String())
					}
				}
			})
		}
	}
}

// TestRolloutDuringVaultOutage: the DaemonSet controller replaces a pod
// that is not ready without counting it against maxUnavailable, so when
// Vault is down and readiness follows it, every pod would be replaced at
// once. Readiness is therefore /livez, which the plugin answers without
// Vault (TestLivenessIsNotReadiness in src/cmd/vault-kms-plugin proves it
// against a real Vault), one pod is replaced at a time with no surge (two
// plugins cannot share the socket), and each must stay ready a while.
func TestRolloutDuringVaultOutage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		values    string
		readiness string
	}{
		{"default", "", "/livez"},
		{"readiness follows Vault", "rollout: {readinessFollowsVault: true}", "/readyz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
			for k, v := range valuesYAML(t, tc.values) {
				vals[k] = v
			}
			ds := render(t, vals).daemonSet(t)
			ru := ds.Spec.UpdateStrategy.RollingUpdate
			c := pluginContainer(t, ds)
			if ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "1" || ru.MaxSurge == nil || ru.MaxSurge.String() != "0" {
				t.Errorf("rollingUpdate %+v, want maxUnavailable 1 and maxSurge 0", ru)
			}
			if ds.Spec.MinReadySeconds < 5 {
				t.Errorf("minReadySeconds %d: a plugin that crashes soon after it starts would not stop the rollout", ds.Spec.MinReadySeconds)
			}
			if got := c.ReadinessProbe.HTTPGet.Path; got != tc.readiness {
				t.Errorf("readiness %s, want %s", got, tc.readiness)
			}
			if got := c.LivenessProbe.HTTPGet.Path; got != "/livez" {
				t.Errorf("liveness %s, want /livez", got)
			}
		})
	}
}

// TestNoServiceLinks: the DaemonSet's pod gets no service-link variables.
// With the metrics Service on, the kubelet would otherwise add
// VAULT_KMS_PLUGIN_METRICS_SERVICE_HOST and the like, named like settings.
func TestNoServiceLinks(t *testing.T) {
	for _, file := range []string{"testdata/vault-values.yaml", "../../../charts/vault-kms-plugin/ci/token-values.yaml"} {
		ds := render(t, valuesFrom(t, []string{file})).daemonSet(t)
		if l := ds.Spec.Template.Spec.EnableServiceLinks; l == nil || *l {
			t.Errorf("%s: enableServiceLinks is not false", file)
		}
	}
}

// memLimitProbeEnv makes the test binary print the Go runtime's memory
// limit and exit: TestGoMemLimit starts it with the GOMEMLIMIT the kubelet
// would give the plugin, so that a value the runtime refuses (it aborts at
// start on a malformed one) fails the test.
const memLimitProbeEnv = "CHART_TEST_PRINT_MEMORY_LIMIT"

func TestMain(m *testing.M) {
	if os.Getenv(memLimitProbeEnv) != "" {
		fmt.Print(debug.SetMemoryLimit(-1))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// goRuntimeMemoryLimit is the memory limit a Go process started with
// GOMEMLIMIT=value runs with.
func goRuntimeMemoryLimit(t *testing.T, value string) int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{memLimitProbeEnv + "=1", "GOMEMLIMIT=" + value}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("a Go process with GOMEMLIMIT=%q does not start: %v: %s", value, err, out)
	}
	n, err := strconv.ParseInt(string(out), 10, 64)
	if err != nil {
		t.Fatalf("memory limit %q: %v", out, err)
	}
	return n
}
