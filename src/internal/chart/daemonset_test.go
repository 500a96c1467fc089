package chart

import (
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestDaemonSetDefaults checks the DaemonSet the users' vault-values.yaml
// gives against the requirements, one by one.
func TestDaemonSetDefaults(t *testing.T) {
	r := render(t, valuesFrom(t, []string{"testdata/vault-values.yaml"}))
	ds := r.daemonSet(t)
	pod := ds.Spec.Template.Spec
	c := pluginContainer(t, ds)
	appVersion := loadChart(t).Metadata.AppVersion

	// The selector is immutable: exactly these two labels, forever.
	wantSelector := map[string]string{
		"app.kubernetes.io/name":     "vault-kms-plugin",
		"app.kubernetes.io/instance": releaseName,
	}
	if !maps.Equal(ds.Spec.Selector.MatchLabels, wantSelector) || len(ds.Spec.Selector.MatchExpressions) != 0 {
		t.Errorf("selector = %+v, want exactly %v", ds.Spec.Selector, wantSelector)
	}
	for k, v := range wantSelector {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("pod label %s = %q, want %q", k, ds.Spec.Template.Labels[k], v)
		}
	}

	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"name", ds.Name, "vault-kms-plugin"},
		{"update strategy", ds.Spec.UpdateStrategy.Type, appsv1.RollingUpdateDaemonSetStrategyType},
		{"maxUnavailable", ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.String(), "1"},
		{"nodeSelector", pod.NodeSelector, map[string]string{"node-role.kubernetes.io/control-plane": ""}},
		{"priorityClassName", pod.PriorityClassName, "system-node-critical"},
		{"automountServiceAccountToken", *pod.AutomountServiceAccountToken, false},
		{"serviceAccountName", pod.ServiceAccountName, "vault-kms-plugin"},
		{"hostNetwork", pod.HostNetwork, true},
		{"dnsPolicy", pod.DNSPolicy, corev1.DNSClusterFirstWithHostNet},
		{"liveness host", c.LivenessProbe.HTTPGet.Host, "127.0.0.1"},
		{"readiness host", c.ReadinessProbe.HTTPGet.Host, "127.0.0.1"},
		{"imagePullSecrets", len(pod.ImagePullSecrets), 0},
		{"image", c.Image, "ghcr.io/vault-kms-plugin/vault-kms-plugin:" + appVersion},
		{"command", c.Command, []string{"/vault-kms-plugin"}},
		{"args", c.Args, []string{"serve"}},
		{"runAsUser", *pod.SecurityContext.RunAsUser, int64(0)},
		{"seccomp", pod.SecurityContext.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault},
		{"allowPrivilegeEscalation", *c.SecurityContext.AllowPrivilegeEscalation, false},
		{"readOnlyRootFilesystem", *c.SecurityContext.ReadOnlyRootFilesystem, true},
		{"capabilities.drop", c.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"}},
		{"capabilities.add", len(c.SecurityContext.Capabilities.Add), 0},
		{"liveness path", c.LivenessProbe.HTTPGet.Path, "/livez"},
		{"readiness path (needs no Vault)", c.ReadinessProbe.HTTPGet.Path, "/livez"},
		{"health port", c.Ports[0].ContainerPort, int32(8787)},
	} {
		if !equal(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}

	if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Key == "node-role.kubernetes.io/control-plane" && tl.Effect == corev1.TaintEffectNoSchedule &&
			tl.Operator == corev1.TolerationOpExists
	}) {
		t.Errorf("tolerations %+v: none for the control-plane NoSchedule taint", pod.Tolerations)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
			t.Errorf("no %s request", res)
		}
	}
	if sum := ds.Spec.Template.Annotations["checksum/config"]; len(sum) != 64 {
		t.Errorf("checksum/config = %q, want a sha256", sum)
	}

	// The projected token carries the configured audience.
	tok := volumeByName(t, pod.Volumes, "sa-token")
	if tok.Projected == nil || len(tok.Projected.Sources) != 1 || tok.Projected.Sources[0].ServiceAccountToken == nil ||
		tok.Projected.Sources[0].ServiceAccountToken.Audience != "vault" {
		t.Errorf("sa-token volume = %+v, want a projected token with audience vault", tok.VolumeSource)
	}

	// ca-cert from the vault-values.yaml: the node file's directory, at the
	// same path, so that a CA renamed over the old one is seen.
	ca := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/home/me" })
	if ca < 0 {
		t.Fatalf("the directory of ca-cert /home/me/ca.cert is not mounted: %+v", c.VolumeMounts)
	}
	v := volumeByName(t, pod.Volumes, c.VolumeMounts[ca].Name)
	if v.HostPath == nil || v.HostPath.Path != "/home/me" || *v.HostPath.Type != corev1.HostPathDirectory || !c.VolumeMounts[ca].ReadOnly {
		t.Errorf("ca-cert volume = %+v, want hostPath /home/me of type Directory, read-only", v.VolumeSource)
	}

	// RBAC: the service account may review tokens.
	crb := one[*rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding")
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != "system:auth-delegator" || len(crb.Subjects) != 1 ||
		crb.Subjects[0].Kind != "ServiceAccount" || crb.Subjects[0].Name != pod.ServiceAccountName ||
		crb.Subjects[0].Namespace != namespace {
		t.Errorf("ClusterRoleBinding = %+v", crb)
	}
	sa := one[*corev1.ServiceAccount](t, r, "ServiceAccount")
	if sa.Name != pod.ServiceAccountName {
		t.Errorf("ServiceAccount %q, pod uses %q", sa.Name, pod.ServiceAccountName)
	}

	// Metrics are off by default.
	if n := len(all[*corev1.Service](r, "Service")) + len(all[*serviceMonitor](r, "ServiceMonitor")); n != 0 {
		t.Errorf("%d metrics objects rendered by default, want none", n)
	}
}

// TestTestPodPlacement: the helm test pod runs where the plugin runs.
func TestTestPodPlacement(t *testing.T) {
	for _, s := range valueSets(t) {
		t.Run(s.name, func(t *testing.T) {
			r := render(t, s.values(t))
			ds, pod := r.daemonSet(t).Spec.Template.Spec, r.testPod(t)
			if pod.Annotations["helm.sh/hook"] != "test" {
				t.Errorf("test pod hook = %q", pod.Annotations["helm.sh/hook"])
			}
			if !maps.Equal(pod.Spec.NodeSelector, ds.NodeSelector) || !equal(pod.Spec.Tolerations, ds.Tolerations) {
				t.Errorf("test pod placement %v %v differs from the DaemonSet's %v %v",
					pod.Spec.NodeSelector, pod.Spec.Tolerations, ds.NodeSelector, ds.Tolerations)
			}
			c := pod.Spec.Containers[0]
			if c.Image != ds.Containers[0].Image || !slices.Equal(c.Command, []string{"/vault-kms-plugin"}) ||
				len(c.Args) == 0 || c.Args[0] != "probe" || !slices.Contains(c.Args, "-wait") {
				t.Errorf("test pod runs %q %q %q, want the plugin's probe -wait", c.Image, c.Command, c.Args)
			}
			if pod.Spec.RestartPolicy != corev1.RestartPolicyNever || pod.Spec.ActiveDeadlineSeconds == nil {
				t.Errorf("test pod: restartPolicy %q, activeDeadlineSeconds %v: want Never and a deadline",
					pod.Spec.RestartPolicy, pod.Spec.ActiveDeadlineSeconds)
			}
		})
	}
}

// TestNoSecretDependency: cold start. Nothing in the plugin's pod may need
// the apiserver to decrypt a Secret.
func TestNoSecretDependency(t *testing.T) {
	for _, s := range valueSets(t) {
		t.Run(s.name, func(t *testing.T) {
			r := render(t, s.values(t))
			for _, pod := range []corev1.PodSpec{r.daemonSet(t).Spec.Template.Spec, r.testPod(t).Spec} {
				if len(pod.ImagePullSecrets) != 0 {
					t.Errorf("imagePullSecrets %v", pod.ImagePullSecrets)
				}
				for _, v := range pod.Volumes {
					if v.Secret != nil {
						t.Errorf("Secret volume %q", v.Name)
					}
					if v.Projected != nil {
						for _, src := range v.Projected.Sources {
							if src.Secret != nil {
								t.Errorf("projected Secret in volume %q", v.Name)
							}
						}
					}
				}
				for _, c := range pod.Containers {
					for _, ef := range c.EnvFrom {
						if ef.SecretRef != nil {
							t.Errorf("envFrom Secret %q", ef.SecretRef.Name)
						}
					}
					for _, e := range c.Env {
						if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
							t.Errorf("env %s from a Secret", e.Name)
						}
					}
				}
			}
		})
	}
}

// TestSettingsChangeRollsPods: checksum/config follows the settings and
// only them.
func TestSettingsChangeRollsPods(t *testing.T) {
	base := "keyNames: [my-key]\naddr: https://example.com:8200\n"
	sum := func(extra string) string {
		t.Helper()
		return render(t, valuesYAML(t, base+extra)).daemonSet(t).Spec.Template.Annotations["checksum/config"]
	}
	ref := sum("")
	for _, tc := range []struct {
		extra string
		same  bool
	}{
		{"podAnnotations: {a: b}\n", true},
		{"resources: {requests: {cpu: 20m, memory: 64Mi}}\n", true},
		{"logLevel: debug\n", false},
		{"transitPath: other\n", false},
		{"caBundle: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"\n", false},
	} {
		if got := sum(tc.extra); (got == ref) != tc.same {
			t.Errorf("%q: checksum changed = %v, want %v", tc.extra, got != ref, !tc.same)
		}
	}
}

// TestImageReference: tag defaults to appVersion; a digest wins.
func TestImageReference(t *testing.T) {
	base := "keyNames: [my-key]\naddr: https://example.com:8200\n"
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ extra, want string }{
		{"", "ghcr.io/vault-kms-plugin/vault-kms-plugin:" + loadChart(t).Metadata.AppVersion},
		{"image: {tag: \"1.2.3\"}\n", "ghcr.io/vault-kms-plugin/vault-kms-plugin:1.2.3"},
		{"image: {repository: registry.local/kms, tag: \"1.2.3\", digest: " + digest + "}\n", "registry.local/kms@" + digest},
	} {
		if got := pluginContainer(t, render(t, valuesYAML(t, base+tc.extra)).daemonSet(t)).Image; got != tc.want {
			t.Errorf("%q: image %q, want %q", tc.extra, got, tc.want)
		}
	}
}

// equal compares two values through their YAML form, which is enough for
// the plain data compared here.
func equal(a, b any) bool {
	return strings.TrimSpace(mustYAML(a)) == strings.TrimSpace(mustYAML(b))
}

// TestHealthExposure checks where the health server (and so /metrics)
// listens: on the node's loopback on the node network unless the values ask
// for the network, and where the kubelet's probes look in every case.
func TestHealthExposure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set       map[string]any
		addr      string // VAULT_KMS_HEALTH_ADDR
		probeHost string
	}{
		{"node network: loopback", nil, "127.0.0.1:8787", "127.0.0.1"},
		{"pod network: every pod address", map[string]any{"hostNetwork": false}, ":8787", ""},
		{"metrics Service asks for the network", map[string]any{"metrics": map[string]any{"service": map[string]any{"enabled": true}}}, ":8787", ""},
		{"explicit bind address", map[string]any{"health": map[string]any{"bindAddress": "0.0.0.0", "port": 9000}}, "0.0.0.0:9000", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
			for k, v := range tc.set {
				vals[k] = v
			}
			r := render(t, vals)
			ds := r.daemonSet(t)
			c := pluginContainer(t, ds)
			cm := r.configMap(t, "vault-kms-plugin")
			if got := cm.Data["VAULT_KMS_HEALTH_ADDR"]; got != tc.addr {
				t.Errorf("VAULT_KMS_HEALTH_ADDR = %q, want %q", got, tc.addr)
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
				if p.HTTPGet.Host != tc.probeHost {
					t.Errorf("probe %s host = %q, want %q", p.HTTPGet.Path, p.HTTPGet.Host, tc.probeHost)
				}
			}
		})
	}
}

// TestNoOtherPodMatchesTheSelector: the DaemonSet controller adopts every
// pod in its namespace that matches its selector and deletes a surplus one
// on a node. A real kubelet and controller manager did exactly that to the
// helm test pod while it carried the selector labels.
func TestNoOtherPodMatchesTheSelector(t *testing.T) {
	for _, s := range valueSets(t) {
		t.Run(s.name, func(t *testing.T) {
			r := render(t, s.values(t))
			sel := r.daemonSet(t).Spec.Selector.MatchLabels
			pod := r.testPod(t)
			matches := true
			for k, v := range sel {
				if pod.Labels[k] != v {
					matches = false
				}
			}
			if matches {
				t.Errorf("the helm test pod's labels %v match the DaemonSet's selector %v: the DaemonSet would adopt and delete it", pod.Labels, sel)
			}
			if pod.Labels["app.kubernetes.io/instance"] != releaseName || pod.Labels["app.kubernetes.io/component"] != "test" {
				t.Errorf("the helm test pod's labels %v: want the release's instance and component test", pod.Labels)
			}
		})
	}
}
