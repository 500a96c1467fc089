package chart

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const (
	releaseName = "vault-kms-plugin"
	namespace   = "kube-system"
	// kubeVersion is set explicitly: Helm's library defaults to 1.20, below
	// the chart's kubeVersion floor.
	kubeVersion = "v1.37.0"
)

// repoRoot is the repository's root, found from this file's location.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "vault-kms-plugin") }

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// valuesFrom merges values files and --set-file style arguments as the helm
// CLI does.
func valuesFrom(t testing.TB, files []string, setFiles ...string) map[string]any {
	t.Helper()
	opts := values.Options{ValueFiles: files, FileValues: setFiles}
	v, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		t.Fatalf("values %v: %v", files, err)
	}
	return v
}

// valuesYAML parses inline values.
func valuesYAML(t testing.TB, s string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValues([]byte(s))
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	return v.AsMap()
}

// install renders the chart exactly as `helm install --dry-run` does on a
// cluster of kubeVersion: schema validation, the kubeVersion check, hooks
// and NOTES.txt included.
func install(c *chart.Chart, vals map[string]any, kv string) (*release.Release, error) {
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	in := action.NewInstall(cfg)
	in.ReleaseName = releaseName
	in.Namespace = namespace
	in.DryRun = true
	in.ClientOnly = true
	v, err := chartutil.ParseKubeVersion(kv)
	if err != nil {
		return nil, err
	}
	in.KubeVersion = v
	return in.Run(c, vals)
}

// rendered is one render of the chart, decoded.
type rendered struct {
	rel  *release.Release
	objs []object
}

type object struct {
	source string // template path
	kind   string
	name   string
	obj    any // pointer to the typed object
}

func render(t testing.TB, vals map[string]any) *rendered {
	t.Helper()
	return renderChart(t, loadChart(t), vals)
}

// renderChart is render for any chart, such as a released one.
func renderChart(t testing.TB, c *chart.Chart, vals map[string]any) *rendered {
	t.Helper()
	rel, err := install(c, vals, kubeVersion)
	if err != nil {
		t.Fatalf("render %s %s: %v", c.Name(), c.Metadata.Version, err)
	}
	return decodeRelease(t, rel)
}

// decodeRelease decodes every object of a release, hooks included,
// strictly.
func decodeRelease(t testing.TB, rel *release.Release) *rendered {
	t.Helper()
	r := &rendered{rel: rel}
	docs := splitManifest(rel.Manifest)
	for _, h := range rel.Hooks {
		docs = append(docs, splitManifest("# Source: "+h.Path+"\n"+h.Manifest)...)
	}
	for _, d := range docs {
		o, err := decodeStrict(d.body)
		if err != nil {
			t.Fatalf("%s: %v\n%s", d.source, err, d.body)
		}
		o.source = d.source
		r.objs = append(r.objs, o)
	}
	return r
}

type doc struct{ source, body string }

// splitManifest splits a multi-document manifest as Helm writes it, keeping
// each document's "# Source:" template path.
func splitManifest(m string) []doc {
	var out []doc
	for _, part := range strings.Split(m, "\n---") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "---")
		if strings.TrimSpace(part) == "" {
			continue
		}
		src := ""
		if first, _, _ := strings.Cut(strings.TrimSpace(part), "\n"); strings.HasPrefix(first, "# Source: ") {
			src = strings.TrimPrefix(first, "# Source: ")
		}
		out = append(out, doc{source: src, body: part})
	}
	return out
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart uses; decoding into it strictly catches a misspelt field.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// decodeStrict decodes one YAML document into its k8s.io/api type, failing
// on duplicate keys and unknown or misspelt fields.
func decodeStrict(y string) (object, error) {
	j, err := yaml.YAMLToJSONStrict([]byte(y))
	if err != nil {
		return object{}, err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return object{}, err
	}
	var into any
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/ConfigMap":
		into = &corev1.ConfigMap{}
	case "v1/ServiceAccount":
		into = &corev1.ServiceAccount{}
	case "v1/Service":
		into = &corev1.Service{}
	case "v1/Pod":
		into = &corev1.Pod{}
	case "apps/v1/DaemonSet":
		into = &appsv1.DaemonSet{}
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		into = &rbacv1.ClusterRoleBinding{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		into = &serviceMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		into = &prometheusRule{}
	default:
		return object{}, fmt.Errorf("no type known for apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	if err := strictJSON(j, into); err != nil {
		return object{}, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	meta, ok := into.(metav1.Object)
	if !ok {
		return object{}, fmt.Errorf("%s: no metadata", tm.Kind)
	}
	return object{kind: tm.Kind, name: meta.GetName(), obj: into}, nil
}

// strictJSON is Kubernetes' own strict decoding: unknown and duplicate
// fields fail and, unlike encoding/json, names match case-sensitively
// (readOnlyRootFileSystem is not a field).
func strictJSON(j []byte, into any) error {
	strict, err := kjson.UnmarshalStrict(j, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// strictYAML is strictJSON for one YAML document.
func strictYAML(y []byte, into any) error {
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return err
	}
	return strictJSON(j, into)
}

// one returns the only object of a kind, typed.
func one[T any](t testing.TB, r *rendered, kind string) T {
	t.Helper()
	var found []T
	for _, o := range r.objs {
		if o.kind == kind {
			found = append(found, o.obj.(T))
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, got %d", kind, len(found))
	}
	return found[0]
}

// all returns every object of a kind, typed.
func all[T any](r *rendered, kind string) []T {
	var found []T
	for _, o := range r.objs {
		if o.kind == kind {
			found = append(found, o.obj.(T))
		}
	}
	return found
}

func (r *rendered) daemonSet(t testing.TB) *appsv1.DaemonSet {
	return one[*appsv1.DaemonSet](t, r, "DaemonSet")
}

// values are the values the chart was rendered with: the chart's defaults
// merged with the user's.
func (r *rendered) values(t testing.TB) map[string]any {
	t.Helper()
	v, err := chartutil.CoalesceValues(r.rel.Chart, r.rel.Config)
	if err != nil {
		t.Fatal(err)
	}
	return v.AsMap()
}

// testPod is the `helm test` pod.
func (r *rendered) testPod(t testing.TB) *corev1.Pod { return one[*corev1.Pod](t, r, "Pod") }

func (r *rendered) configMap(t testing.TB, name string) *corev1.ConfigMap {
	t.Helper()
	for _, cm := range all[*corev1.ConfigMap](r, "ConfigMap") {
		if cm.Name == name {
			return cm
		}
	}
	t.Fatalf("no ConfigMap %q", name)
	return nil
}

// pluginContainer is the DaemonSet's only container.
func pluginContainer(t testing.TB, ds *appsv1.DaemonSet) corev1.Container {
	t.Helper()
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("want one container, got %d", len(cs))
	}
	return cs[0]
}

// containerEnv resolves the environment the container gets: envFrom
// ConfigMaps first, then env, which wins, as the kubelet does.
func (r *rendered) containerEnv(t testing.TB, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil || ef.Prefix != "" {
			t.Fatalf("envFrom %+v: only plain ConfigMap refs are expected", ef)
		}
		for k, v := range r.configMap(t, ef.ConfigMapRef.Name).Data {
			env[k] = v
		}
	}
	resolveEnv(t, c, env)
	return env
}

// resolveEnv adds c's env to env as the kubelet resolves it: a
// resourceFieldRef is the container's resource divided by the divisor,
// rounded up, and $(NAME) is the value of an earlier variable. Any other
// valueFrom fails the test: it would need the apiserver.
func resolveEnv(t testing.TB, c corev1.Container, env map[string]string) {
	t.Helper()
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = ref.ReplaceAllStringFunc(e.Value, func(m string) string {
				name := ref.FindStringSubmatch(m)[1]
				if v, ok := env[name]; ok {
					return v
				}
				return m
			})
		case e.ValueFrom.ResourceFieldRef != nil:
			rf := e.ValueFrom.ResourceFieldRef
			if rf.ContainerName != c.Name || rf.Resource != "limits.memory" {
				t.Fatalf("env %s: resourceFieldRef %+v, want limits.memory of %s", e.Name, rf, c.Name)
			}
			limit, ok := c.Resources.Limits[corev1.ResourceMemory]
			if !ok {
				t.Fatalf("env %s reads limits.memory, which the container does not set", e.Name)
			}
			div := rf.Divisor.Value()
			env[e.Name] = strconv.FormatInt((limit.Value()+div-1)/div, 10)
		default:
			t.Fatalf("env %s: valueFrom %+v is not expected", e.Name, e.ValueFrom)
		}
	}
}

func volumeByName(t testing.TB, vols []corev1.Volume, name string) corev1.Volume {
	t.Helper()
	i := slices.IndexFunc(vols, func(v corev1.Volume) bool { return v.Name == name })
	if i < 0 {
		t.Fatalf("no volume %q", name)
	}
	return vols[i]
}

func mountByName(t testing.TB, mounts []corev1.VolumeMount, name string) corev1.VolumeMount {
	t.Helper()
	i := slices.IndexFunc(mounts, func(m corev1.VolumeMount) bool { return m.Name == name })
	if i < 0 {
		t.Fatalf("no volume mount %q", name)
	}
	return mounts[i]
}

// goldenText is what `helm install --dry-run` prints of a release: the
// manifest, the hooks, then the notes.
func goldenText(rel *release.Release) string {
	var b strings.Builder
	b.WriteString(strings.TrimSpace(rel.Manifest))
	b.WriteString("\n")
	for _, h := range rel.Hooks {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", h.Path, strings.TrimSpace(h.Manifest))
	}
	fmt.Fprintf(&b, "\n# NOTES:\n%s\n", rel.Info.Notes)
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".yaml")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./src/internal/chart -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the rendered chart (run go test ./src/internal/chart -update and review the diff):\n%s",
			path, firstDiff(string(want), got))
	}
}

// firstDiff shows where two texts first differ, line by line.
func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n  golden:   %q\n  rendered: %q", i+1, w, g)
		}
	}
	return "(same lines, different endings)"
}

func mustYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
