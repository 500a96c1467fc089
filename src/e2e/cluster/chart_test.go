package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// The release as the README installs it: `helm install vault-kms-plugin
// charts/vault-kms-plugin -n kube-system -f vault-values.yaml`.
const (
	releaseName = "vault-kms-plugin"
	releaseNS   = "kube-system"
	kubeVersion = "v1.37.2" // the test bed's kube-apiserver
)

// doc is one document of the rendered chart.
type doc struct{ source, kind, name, body string }

// rendered is the chart rendered as `helm install --dry-run` renders it.
type rendered struct {
	docs       []doc // manifest, then hooks
	ds         *appsv1.DaemonSet
	sa         *corev1.ServiceAccount
	configMaps map[string]*corev1.ConfigMap
}

// renderChart renders the chart with a values file, through Helm's own
// install action (schema validation and kubeVersion check included).
func renderChart(t testing.TB, valuesFile string) *rendered {
	t.Helper()
	c, err := loader.Load(filepath.Join(bed.RepoRoot(t), "charts", "vault-kms-plugin"))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals, err := (&values.Options{ValueFiles: []string{valuesFile}}).MergeValues(getter.Providers{})
	if err != nil {
		t.Fatalf("values %s: %v", valuesFile, err)
	}
	in := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	in.ReleaseName = releaseName
	in.Namespace = releaseNS
	in.DryRun = true
	in.ClientOnly = true
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	in.KubeVersion = kv
	rel, err := in.Run(c, vals)
	if err != nil {
		t.Fatalf("render the chart with %s: %v", valuesFile, err)
	}
	r := &rendered{configMaps: map[string]*corev1.ConfigMap{}}
	texts := []string{rel.Manifest}
	for _, h := range rel.Hooks {
		texts = append(texts, "# Source: "+h.Path+"\n"+h.Manifest)
	}
	for _, text := range texts {
		for _, part := range strings.Split(text, "\n---") {
			part = strings.TrimPrefix(strings.TrimSpace(part), "---")
			if strings.TrimSpace(part) == "" {
				continue
			}
			d := doc{body: strings.TrimSpace(part)}
			if first, _, _ := strings.Cut(d.body, "\n"); strings.HasPrefix(first, "# Source: ") {
				d.source = strings.TrimPrefix(first, "# Source: ")
			}
			var meta struct {
				metav1.TypeMeta
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(d.body), &meta); err != nil {
				t.Fatalf("%s: %v", d.source, err)
			}
			d.kind, d.name = meta.Kind, meta.Metadata.Name
			r.docs = append(r.docs, d)
			switch d.kind {
			case "DaemonSet":
				r.ds = &appsv1.DaemonSet{}
				strictDecode(t, d, r.ds)
			case "ServiceAccount":
				r.sa = &corev1.ServiceAccount{}
				strictDecode(t, d, r.sa)
			case "ConfigMap":
				cm := &corev1.ConfigMap{}
				strictDecode(t, d, cm)
				r.configMaps[cm.Name] = cm
			case "ClusterRoleBinding":
				strictDecode(t, d, &rbacv1.ClusterRoleBinding{})
			}
		}
	}
	if r.ds == nil || r.sa == nil {
		t.Fatalf("the chart rendered no DaemonSet or no ServiceAccount")
	}
	return r
}

// strictDecode decodes a document as Kubernetes does, failing on unknown,
// misspelt or duplicate fields.
func strictDecode(t testing.TB, d doc, into any) {
	t.Helper()
	j, err := yaml.YAMLToJSONStrict([]byte(d.body))
	if err != nil {
		t.Fatalf("%s: %v", d.source, err)
	}
	strict, err := kjson.UnmarshalStrict(j, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err == nil {
		err = errors.Join(strict...)
	}
	if err != nil {
		t.Fatalf("%s (%s %s): %v", d.source, d.kind, d.name, err)
	}
}

// yamlOf joins the documents keep selects into one multi-document file.
func (r *rendered) yamlOf(keep func(doc) bool) string {
	var parts []string
	for _, d := range r.docs {
		if keep(d) {
			parts = append(parts, "# Source: "+d.source+"\n"+d.body+"\n")
		}
	}
	return strings.Join(parts, "---\n")
}

// podPlan is how the DaemonSet's pod runs the plugin, mapped onto this
// machine: the node's filesystem is a directory (hostRoot), and the pod's
// network is 127.0.0.1 with free ports.
type podPlan struct {
	argv     []string          // argv[0] is the binary built from this tree
	chartEnv map[string]string // the container's environment as the chart gives it
	env      map[string]string // the same with paths and ports mapped
	mounts   map[string]string // container mount path → directory on this machine

	socket     string // the socket on this machine (VAULT_KMS_LISTEN, mapped)
	tokenFile  string // where the kubelet would put the projected token
	saName     string // the pod's service account, and its namespace
	saNS       string
	audience   string
	expiration int64

	readyURL, liveURL, metricsURL string
}

// planPod resolves the DaemonSet's container: command, args, envFrom (the
// rendered ConfigMaps) and env, its volumes mapped under hostRoot (hostPath)
// and podDir (projected and ConfigMap volumes). Every variable the plugin
// reads as a file or socket path must point inside a mounted volume, and every port the probes use must be one the plugin
// listens on: a chart that points the binary at the wrong place fails here.
func planPod(t testing.TB, r *rendered, pluginBin, hostRoot, podDir string) *podPlan {
	t.Helper()
	spec := r.ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("DaemonSet: want one container, got %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	p := &podPlan{chartEnv: map[string]string{}, env: map[string]string{}, mounts: map[string]string{},
		saName: spec.ServiceAccountName, saNS: r.ds.Namespace}

	// Command and arguments: the image's binary is this tree's binary.
	if len(c.Command) != 1 || filepath.Base(c.Command[0]) != "vault-kms-plugin" {
		t.Fatalf("container command %q: want the plugin binary alone", c.Command)
	}
	p.argv = append([]string{pluginBin}, c.Args...)

	// Environment: envFrom ConfigMaps first, then env, which wins (as the kubelet does).
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil || ef.Prefix != "" {
			t.Fatalf("envFrom %+v: only plain ConfigMap references are expected", ef)
		}
		cm, ok := r.configMaps[ef.ConfigMapRef.Name]
		if !ok {
			t.Fatalf("envFrom: the chart rendered no ConfigMap %q", ef.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			p.chartEnv[k] = v
		}
	}
	// env entries as the kubelet resolves them: the memory limit through
	// the downward API, and $(NAME) of an entry defined before.
	// A variable only referenced that way is the kubelet's business, not
	// the binary's: it leaves the plan.
	defined, referenced := map[string]string{}, map[string]bool{}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom == nil:
			v = envRef.ReplaceAllStringFunc(v, func(ref string) string {
				name := ref[2 : len(ref)-1]
				if val, ok := defined[name]; ok {
					referenced[name] = true
					return val
				}
				return ref
			})
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			divisor := e.ValueFrom.ResourceFieldRef.Divisor.Value()
			if divisor == 0 {
				divisor = 1
			}
			v = strconv.FormatInt((c.Resources.Limits.Memory().Value()+divisor-1)/divisor, 10)
		default:
			t.Fatalf("env %s: only the memory limit is expected through valueFrom", e.Name)
		}
		defined[e.Name] = v
		p.chartEnv[e.Name] = v
	}
	for name := range referenced {
		delete(p.chartEnv, name)
	}

	// Volumes.
	if err := os.MkdirAll(podDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Fatalf("volume mount %s: subPath is not supported by this test", m.Name)
		}
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			t.Fatalf("volume mount %s: the pod has no such volume", m.Name)
		}
		v := spec.Volumes[i]
		switch {
		case v.HostPath != nil:
			host := filepath.Join(hostRoot, v.HostPath.Path)
			typ := corev1.HostPathUnset
			if v.HostPath.Type != nil {
				typ = *v.HostPath.Type
			}
			switch typ {
			case corev1.HostPathDirectoryOrCreate:
				if err := os.MkdirAll(host, 0o755); err != nil {
					t.Fatal(err)
				}
			case corev1.HostPathDirectory, corev1.HostPathFile, corev1.HostPathUnset:
				if _, err := os.Stat(host); err != nil {
					t.Fatalf("volume %s: hostPath %s (type %q) does not exist on the node: %v", v.Name, v.HostPath.Path, typ, err)
				}
			default:
				t.Fatalf("volume %s: hostPath type %q is not supported by this test", v.Name, typ)
			}
			p.mounts[m.MountPath] = host
		case v.Projected != nil:
			dir := filepath.Join(podDir, "volumes", v.Name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, src := range v.Projected.Sources {
				sat := src.ServiceAccountToken
				if sat == nil {
					t.Fatalf("volume %s: only serviceAccountToken projections are supported by this test", v.Name)
				}
				p.tokenFile = filepath.Join(dir, sat.Path)
				p.audience = sat.Audience
				p.expiration = 3600
				if sat.ExpirationSeconds != nil {
					p.expiration = *sat.ExpirationSeconds
				}
			}
			p.mounts[m.MountPath] = dir
		case v.ConfigMap != nil:
			cm, ok := r.configMaps[v.ConfigMap.Name]
			if !ok || len(v.ConfigMap.Items) > 0 {
				t.Fatalf("volume %s: ConfigMap %q not rendered, or items used", v.Name, v.ConfigMap.Name)
			}
			dir := filepath.Join(podDir, "volumes", v.Name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			for k, val := range cm.Data {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(val), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			p.mounts[m.MountPath] = dir
		default:
			t.Fatalf("volume %s: this kind of volume is not supported by this test", v.Name)
		}
	}

	// Ports: a listen address ":PORT" (or the node's loopback, on the node's
	// network) on a declared container port becomes 127.0.0.1 and a free port.
	ports := map[int32]int{} // container port → port on this machine
	named := map[string]int32{}
	for _, cp := range c.Ports {
		named[cp.Name] = cp.ContainerPort
	}
	listenRE := regexp.MustCompile(`^(?:0\.0\.0\.0|\[::\]|127\.0\.0\.1)?:(\d+)$`)
	mountPaths := sortedKeys(p.mounts)
	// Longest mount path first, so that a nested mount wins.
	slices.SortFunc(mountPaths, func(a, b string) int { return len(b) - len(a) })
	for _, k := range sortedKeys(p.chartEnv) {
		v := p.chartEnv[k]
		if m := listenRE.FindStringSubmatch(v); m != nil {
			port, _ := strconv.Atoi(m[1])
			if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return int(cp.ContainerPort) == port }) {
				t.Fatalf("env %s=%q: port %d is not a containerPort of the DaemonSet", k, v, port)
			}
			ports[int32(port)] = testvault.FreePort(t)
			p.env[k] = fmt.Sprintf("127.0.0.1:%d", ports[int32(port)])
			continue
		}
		if !fileVars[k] || v == "" {
			p.env[k] = v
			continue
		}
		scheme := ""
		path := v
		if strings.HasPrefix(v, "unix://") {
			scheme, path = "unix://", strings.TrimPrefix(v, "unix://")
		}
		if !strings.HasPrefix(path, "/") {
			t.Fatalf("env %s=%q: not an absolute path", k, v)
		}
		mapped := false
		for _, mp := range mountPaths {
			if path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
				p.env[k] = scheme + p.mounts[mp] + strings.TrimPrefix(path, mp)
				mapped = true
				break
			}
		}
		if !mapped {
			t.Fatalf("env %s=%q: %s is in no volume mounted into the container (mounts: %q)", k, v, path, mountPaths)
		}
	}
	if l, ok := p.env["VAULT_KMS_LISTEN"]; ok {
		p.socket = strings.TrimPrefix(l, "unix://")
	}

	// Probes: their port must be where the plugin's health server listens.
	probeURL := func(what string, pr *corev1.Probe) string {
		if pr == nil || pr.HTTPGet == nil {
			t.Fatalf("DaemonSet: no HTTP %s probe", what)
		}
		port := pr.HTTPGet.Port
		var n int32
		if port.Type == intstr.String {
			var ok bool
			if n, ok = named[port.StrVal]; !ok {
				t.Fatalf("%s probe: no container port named %q", what, port.StrVal)
			}
		} else {
			n = port.IntVal
		}
		local, ok := ports[n]
		if !ok {
			t.Fatalf("%s probe: port %d is not where the plugin's health server listens (env %v)", what, n, p.chartEnv)
		}
		return fmt.Sprintf("http://127.0.0.1:%d%s", local, pr.HTTPGet.Path)
	}
	// The chart's readiness probe is /livez, so that a rollout during a
	// Vault outage replaces one pod at a time; the plugin's own readiness,
	// which follows Vault and the outage grace, is /readyz beside it.
	base := strings.TrimSuffix(probeURL("readiness", c.ReadinessProbe), c.ReadinessProbe.HTTPGet.Path)
	p.readyURL = base + "/readyz"
	p.liveURL = probeURL("liveness", c.LivenessProbe)
	p.metricsURL = base + "/metrics"
	return p
}

// fileVars are the variables the plugin reads as paths on its filesystem
// (the README's Configure table and the standard Vault variables).
var fileVars = map[string]bool{
	"VAULT_KMS_LISTEN":                 true,
	"VAULT_KMS_TOKEN_FILE":             true,
	"VAULT_KMS_SA_TOKEN_FILE":          true,
	"VAULT_KMS_APPROLE_SECRET_ID_FILE": true,
	"VAULT_CACERT":                     true,
	"VAULT_CAPATH":                     true,
	"VAULT_CLIENT_CERT":                true,
	"VAULT_CLIENT_KEY":                 true,
}

// environ is the process environment: the container's, and nothing else.
func (p *podPlan) environ() []string {
	var out []string
	for _, k := range sortedKeys(p.env) {
		out = append(out, k+"="+p.env[k])
	}
	return out
}

// checkEnvNames fails unless every variable the chart sets is one the
// binary documents in --help: a misspelt name would be silently ignored.
func checkEnvNames(t testing.TB, pluginBin string, env map[string]string) {
	t.Helper()
	help, err := exec.Command(pluginBin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("vault-kms-plugin --help: %v\n%s", err, help)
	}
	for _, k := range sortedKeys(env) {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(k) + `\b`).Match(help) {
			t.Errorf("the chart sets %s, which 'vault-kms-plugin --help' does not list: the binary ignores it", k)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// envRef is a $(NAME) reference in an env value, which the kubelet expands.
var envRef = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)`)
