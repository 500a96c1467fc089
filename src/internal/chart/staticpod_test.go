package chart

import (
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/strvals"
	corev1 "k8s.io/api/core/v1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
)

// withSet applies --set style assignments to values, as `helm template
// --set` does.
func withSet(t testing.TB, vals map[string]any, sets ...string) map[string]any {
	t.Helper()
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	return vals
}

// staticSet is a way to render the static pod: values files, then --set.
type staticSet struct {
	name  string
	files []string
	sets  []string
}

const jwtFile = "/var/lib/vault-kms-plugin/jwt/token"

// staticSets: the users' vault-values.yaml with a JWT file on the node
// (kubernetes method), the CI token values, AppRole, and cert auth with
// everything else the static pod takes.
func staticSets(t testing.TB) []staticSet {
	return []staticSet{
		{name: "static-kubernetes", files: []string{"testdata/vault-values.yaml"},
			sets: []string{"staticPod.enabled=true", "auth.kubernetes.jwtFile=" + jwtFile}},
		{name: "static-token", files: []string{chartDir(t) + "/ci/token-values.yaml"}, sets: []string{"staticPod.enabled=true"}},
		{name: "static-approle", files: []string{"testdata/approle-values.yaml"}, sets: []string{"staticPod.enabled=true"}},
		{name: "static-cert", files: []string{"testdata/static-cert-values.yaml"}},
	}
}

func (s staticSet) values(t testing.TB) map[string]any {
	return withSet(t, valuesFrom(t, s.files), s.sets...)
}

// daemonSetValues are the same values with the static pod off, and without
// what only the static pod takes.
func (s staticSet) daemonSetValues(t testing.TB) map[string]any {
	v := s.values(t)
	delete(v, "staticPod")
	if auth, ok := v["auth"].(map[string]any); ok {
		delete(auth, "kubernetes")
	}
	return v
}

// loadEnv runs the plugin's configuration code on exactly env.
func loadEnv(t *testing.T, env map[string]string) (*config.Config, error) {
	t.Helper()
	for _, name := range config.VarNames() {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	return config.Load()
}

// TestStaticPod renders the static pod: one Pod and nothing else, decoded
// strictly, with the DaemonSet's settings, nothing taken from the API, and
// an environment the plugin accepts.
func TestStaticPod(t *testing.T) {
	for _, s := range staticSets(t) {
		t.Run(s.name, func(t *testing.T) {
			r := render(t, s.values(t))
			if len(r.rel.Hooks) != 0 {
				t.Errorf("%d hooks rendered (the helm test pod?), want none", len(r.rel.Hooks))
			}
			if len(r.objs) != 1 || r.objs[0].kind != "Pod" {
				var kinds []string
				for _, o := range r.objs {
					kinds = append(kinds, o.kind+" "+o.name)
				}
				t.Fatalf("rendered %v, want exactly one Pod", kinds)
			}
			if !strings.HasSuffix(r.objs[0].source, "templates/static-pod.yaml") {
				t.Errorf("the Pod comes from %s", r.objs[0].source)
			}
			checkGolden(t, s.name, goldenText(r.rel))

			pod := r.objs[0].obj.(*corev1.Pod)
			spec := pod.Spec
			if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
				t.Fatalf("containers %d, init containers %d: want one container", len(spec.Containers), len(spec.InitContainers))
			}
			c := spec.Containers[0]
			vals := r.values(t)
			port := toInt(t, vals["health"].(map[string]any)["port"])

			for _, tc := range []struct {
				what      string
				got, want any
			}{
				{"namespace", pod.Namespace, "kube-system"},
				{"hostNetwork", spec.HostNetwork, true},
				{"dnsPolicy", spec.DNSPolicy, corev1.DNSDefault},
				{"priorityClassName", spec.PriorityClassName, "system-node-critical"},
				{"serviceAccountName", spec.ServiceAccountName, ""},
				{"automountServiceAccountToken", *spec.AutomountServiceAccountToken, false},
				{"enableServiceLinks", *spec.EnableServiceLinks, false},
				{"imagePullSecrets", len(spec.ImagePullSecrets), 0},
				{"nodeName", spec.NodeName, ""},
				{"envFrom", len(c.EnvFrom), 0},
				{"liveness host", c.LivenessProbe.HTTPGet.Host, "127.0.0.1"},
				{"liveness port", c.LivenessProbe.HTTPGet.Port.IntValue(), port},
				{"liveness path", c.LivenessProbe.HTTPGet.Path, "/livez"},
				{"readiness host", c.ReadinessProbe.HTTPGet.Host, "127.0.0.1"},
				{"readiness port", c.ReadinessProbe.HTTPGet.Port.IntValue(), port},
				{"readiness path", c.ReadinessProbe.HTTPGet.Path, "/livez"},
			} {
				if !equal(tc.got, tc.want) {
					t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
				}
			}

			// Nothing the kubelet would have to ask the apiserver for.
			for _, v := range spec.Volumes {
				if v.HostPath == nil && v.EmptyDir == nil {
					t.Errorf("volume %q is neither a hostPath nor an emptyDir: %+v", v.Name, v.VolumeSource)
				}
			}
			seen := map[string]bool{}
			for _, e := range c.Env {
				if seen[e.Name] {
					t.Errorf("env %s is set twice", e.Name)
				}
				seen[e.Name] = true
			}
			// The kubelet resolves a resourceFieldRef itself; any other
			// valueFrom fails here.
			env := map[string]string{}
			resolveEnv(t, c, env)

			// The plugin accepts the environment, and it says what the pod
			// around it does.
			cfg, err := loadEnv(t, env)
			if err != nil {
				t.Fatalf("the plugin rejects the static pod's environment: %v", err)
			}
			if want := "127.0.0.1:" + strconv.Itoa(port); cfg.HealthAddr != want {
				t.Errorf("health address %q, want %q (the node's loopback, where the probes go)", cfg.HealthAddr, want)
			}
			sock := vals["socket"].(map[string]any)
			dir := strings.TrimSuffix(sock["hostDir"].(string), "/")
			if want := "unix://" + dir + "/" + sock["file"].(string); cfg.Listen != want {
				t.Errorf("listen %q, want %q", cfg.Listen, want)
			}
			checkSocketDir(t, "static pod", spec, c, dir, corev1.HostPathDirectoryOrCreate)
			for _, name := range fileVars {
				if p, ok := env[name]; ok {
					checkMounted(t, spec, c, name, p)
				}
			}
			if cfg.AuthMethod == config.AuthKubernetes && cfg.SATokenFile != jwtFile {
				t.Errorf("service-account JWT %q, want the node file %q", cfg.SATokenFile, jwtFile)
			}

			// The same settings as the DaemonSet installed from the same
			// values, except where a static pod must differ.
			dsr := render(t, s.daemonSetValues(t))
			ds := dsr.daemonSet(t)
			dsc := pluginContainer(t, ds)
			dsEnv := dsr.containerEnv(t, dsc)
			for _, k := range []string{"VAULT_KMS_HEALTH_ADDR", "VAULT_KMS_SA_TOKEN_FILE"} {
				delete(dsEnv, k)
				delete(env, k)
			}
			if !maps.Equal(env, dsEnv) {
				t.Errorf("environment differs from the DaemonSet's:\n static pod: %v\n DaemonSet:  %v", env, dsEnv)
			}
			dsSpec := ds.Spec.Template.Spec
			for _, tc := range []struct {
				what      string
				got, want any
			}{
				{"image", c.Image, dsc.Image},
				{"imagePullPolicy", c.ImagePullPolicy, dsc.ImagePullPolicy},
				{"command", c.Command, dsc.Command},
				{"args", c.Args, dsc.Args},
				{"container securityContext", c.SecurityContext, dsc.SecurityContext},
				{"pod securityContext", spec.SecurityContext, dsSpec.SecurityContext},
				{"resources", c.Resources, dsc.Resources},
				{"terminationGracePeriodSeconds", spec.TerminationGracePeriodSeconds, dsSpec.TerminationGracePeriodSeconds},
				{"priorityClassName", spec.PriorityClassName, dsSpec.PriorityClassName},
				{"liveness timing", probeTiming(c.LivenessProbe), probeTiming(dsc.LivenessProbe)},
				{"readiness timing", probeTiming(c.ReadinessProbe), probeTiming(dsc.ReadinessProbe)},
			} {
				if !equal(tc.got, tc.want) {
					t.Errorf("%s = %v, the DaemonSet's is %v", tc.what, tc.got, tc.want)
				}
			}
			if c.SecurityContext == nil || spec.SecurityContext == nil || spec.SecurityContext.RunAsUser == nil {
				t.Error("no explicit runAsUser: the image's default user is not root")
			}

			// A DaemonSet installed next to the static pod must not take
			// the mirror pod for one of its own.
			sel := ds.Spec.Selector.MatchLabels
			matches := true
			for k, v := range sel {
				if pod.Labels[k] != v {
					matches = false
				}
			}
			if matches {
				t.Errorf("static pod labels %v match the DaemonSet's selector %v", pod.Labels, sel)
			}

			if !strings.Contains(r.rel.Info.Notes, "helm template") {
				t.Errorf("NOTES.txt does not say to use helm template:\n%s", r.rel.Info.Notes)
			}
		})
	}
}

// toInt reads a number from values, whichever way it was parsed.
func toInt(t testing.TB, v any) int {
	t.Helper()
	n, err := strconv.Atoi(fmt.Sprint(v))
	if err != nil {
		t.Fatalf("%v is not an integer", v)
	}
	return n
}

// probeTiming is a probe without its handler, which differs on purpose
// (named port in the pod network, loopback and number on the node's).
func probeTiming(p *corev1.Probe) corev1.Probe {
	if p == nil {
		return corev1.Probe{}
	}
	q := *p
	q.ProbeHandler = corev1.ProbeHandler{}
	return q
}

// TestStaticPodLint runs Helm's linter on the static pod's values, warnings
// counting as failures.
func TestStaticPodLint(t *testing.T) {
	for _, s := range staticSets(t) {
		t.Run(s.name, func(t *testing.T) { lintStrict(t, s.values(t)) })
	}
}

// TestStaticPodRefuses: values a static pod cannot honour fail `helm
// template` with a message that says why, and the DaemonSet refuses the
// static pod's JWT file.
func TestStaticPodRefuses(t *testing.T) {
	const vaultValues = "testdata/vault-values.yaml"
	for _, tc := range []struct {
		name string
		sets []string
		want string
	}{
		{"kubernetes without a JWT file", []string{"staticPod.enabled=true"},
			"staticPod.enabled with auth.method kubernetes needs auth.kubernetes.jwtFile"},
		{"caBundle", []string{"staticPod.enabled=true", "auth.method=token", "auth.token.tokenFile=/t/token",
			"caBundle=-----BEGIN CERTIFICATE-----"}, "caBundle is shipped in a ConfigMap"},
		{"imagePullSecrets", []string{"staticPod.enabled=true", "auth.method=token", "auth.token.tokenFile=/t/token",
			"imagePullSecrets[0].name=regcred"}, "imagePullSecrets name Secrets"},
		{"ConfigMap volume", []string{"staticPod.enabled=true", "auth.method=token", "auth.token.tokenFile=/t/token",
			"extraVolumes[0].name=cfg", "extraVolumes[0].configMap.name=cfg"}, `extraVolumes "cfg" is a configMap volume`},
		{"Secret variable", []string{"staticPod.enabled=true", "auth.method=token", "auth.token.tokenFile=/t/token",
			"extraEnv[0].name=X", "extraEnv[0].valueFrom.secretKeyRef.name=s", "extraEnv[0].valueFrom.secretKeyRef.key=k"},
			"extraEnv X comes from a ConfigMap or a Secret"},
		{"DaemonSet with a JWT file", []string{"auth.kubernetes.jwtFile=" + jwtFile},
			"auth.kubernetes.jwtFile is for the static pod only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := install(loadChart(t), withSet(t, valuesFrom(t, []string{vaultValues}), tc.sets...), kubeVersion)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestStaticPodOffByDefault: the default renders no static pod.
func TestStaticPodOffByDefault(t *testing.T) {
	for _, s := range valueSets(t) {
		t.Run(s.name, func(t *testing.T) {
			for _, o := range render(t, s.values(t)).objs {
				if strings.HasSuffix(o.source, "static-pod.yaml") {
					t.Errorf("%s rendered a static pod", s.name)
				}
			}
		})
	}
	if v := loadChart(t).Values["staticPod"].(map[string]any)["enabled"]; v != false {
		t.Errorf("staticPod.enabled defaults to %v", v)
	}
}
