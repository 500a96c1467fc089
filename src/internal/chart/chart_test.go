package chart

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	corev1 "k8s.io/api/core/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
)

// valueSet is one way to install the chart: values files as given with -f,
// and --set-file arguments.
type valueSet struct {
	name     string
	files    []string
	setFiles []string
}

// valueSets lists the value sets every test renders: the users'
// vault-values.yaml verbatim, the chart's ci/*-values.yaml, and the
// testdata ones that reach the other branches of the templates.
func valueSets(t testing.TB) []valueSet {
	t.Helper()
	sets := []valueSet{
		{name: "vault-values", files: []string{"testdata/vault-values.yaml"}},
		{name: "ca-bundle", files: []string{"testdata/vault-values.yaml"}, setFiles: []string{"caBundle=testdata/ca.pem"}},
		{name: "approle", files: []string{"testdata/approle-values.yaml"}},
		{name: "full", files: []string{"testdata/full-values.yaml"}},
	}
	ci, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*-values.yaml"))
	if err != nil || len(ci) == 0 {
		t.Fatalf("no ci/*-values.yaml in the chart (%v)", err)
	}
	for _, f := range ci {
		sets = append(sets, valueSet{name: "ci-" + strings.TrimSuffix(filepath.Base(f), "-values.yaml"), files: []string{f}})
	}
	return sets
}

func (s valueSet) values(t testing.TB) map[string]any { return valuesFrom(t, s.files, s.setFiles...) }

func TestChartMetadata(t *testing.T) {
	c := loadChart(t)
	version, err := os.ReadFile(filepath.Join(repoRoot(t), "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ field, got, want string }{
		{"name", c.Metadata.Name, "vault-kms-plugin"},
		{"apiVersion", c.Metadata.APIVersion, "v2"},
		{"appVersion (= VERSION)", c.Metadata.AppVersion, strings.TrimSpace(string(version))},
		{"kubeVersion", c.Metadata.KubeVersion, ">=1.29.0-0"},
		{"type", c.Metadata.Type, "application"},
	} {
		if tc.got != tc.want {
			t.Errorf("Chart.yaml %s = %q, want %q", tc.field, tc.got, tc.want)
		}
	}
	// The version: TestChartVersionMoves.
	if c.Schema == nil {
		t.Error("the chart has no values.schema.json")
	}
	if strings.Contains(string(c.Schema), `"$ref"`) {
		t.Error("values.schema.json must be self-contained: no $ref")
	}
}

func TestKubeVersionFloor(t *testing.T) {
	vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
	for _, tc := range []struct {
		kube    string
		wantErr bool
	}{
		{"v1.28.15", true},
		{"v1.29.0", false},
		{"v1.29.0-eks-1234", false},
		{kubeVersion, false},
	} {
		t.Run(tc.kube, func(t *testing.T) {
			_, err := install(loadChart(t), vals, tc.kube)
			switch {
			case tc.wantErr && (err == nil || !strings.Contains(err.Error(), "chart requires kubeVersion")):
				t.Errorf("Kubernetes %s: err = %v, want the kubeVersion refusal", tc.kube, err)
			case !tc.wantErr && err != nil:
				t.Errorf("Kubernetes %s: %v", tc.kube, err)
			}
		})
	}
}

// TestRender renders every value set, decodes every object strictly
// (render does), and compares with the golden files.
func TestRender(t *testing.T) {
	clusterScoped := map[string]bool{"ClusterRoleBinding": true}
	for _, s := range valueSets(t) {
		t.Run(s.name, func(t *testing.T) {
			r := render(t, s.values(t))
			kinds := map[string]int{}
			for _, o := range r.objs {
				kinds[o.kind]++
				ns := o.obj.(interface{ GetNamespace() string }).GetNamespace()
				switch {
				case clusterScoped[o.kind] && ns != "":
					t.Errorf("%s %s: cluster-scoped, yet namespace %q", o.kind, o.name, ns)
				case !clusterScoped[o.kind] && ns != namespace:
					t.Errorf("%s %s: namespace %q, want the release's %q", o.kind, o.name, ns, namespace)
				}
			}
			for _, k := range []string{"ServiceAccount", "ConfigMap", "DaemonSet", "Pod"} {
				if kinds[k] == 0 {
					t.Errorf("no %s rendered", k)
				}
			}
			checkGolden(t, s.name, goldenText(r.rel))
		})
	}
}

// lintStrict runs Helm's linter on vals at kubeVersion and fails on
// warnings too, as `helm lint --strict` does.
func lintStrict(t *testing.T, vals map[string]any) {
	t.Helper()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range lint.AllWithKubeVersion(chartDir(t), vals, namespace, kv).Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("lint: %s", m)
		}
	}
}

// TestLint runs Helm's linter on every value set; warnings count as
// failures, as `helm lint --strict` has it.
func TestLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range valueSets(t) {
		t.Run(s.name, func(t *testing.T) { lintStrict(t, s.values(t)) })
	}
	t.Run("no values", func(t *testing.T) {
		// addr and keyNames have no default: a bare lint must say so.
		res := lint.AllWithKubeVersion(chartDir(t), nil, namespace, kv)
		if res.HighestSeverity < support.ErrorSev || !strings.Contains(lintText(res), "missing properties 'addr', 'keyNames'") {
			t.Errorf("lint without values: want an error naming addr and keyNames, got:\n%s", lintText(res))
		}
	})
}

func lintText(l support.Linter) string {
	var b strings.Builder
	for _, m := range l.Messages {
		b.WriteString(m.Error() + "\n")
	}
	return b.String()
}

// TestBadValues: a bad values file fails the install with a message that
// names the key.
func TestBadValues(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"missing-addr.yaml", []string{"missing property 'addr'"}},
		{"empty-keynames.yaml", []string{"at '/keyNames'", "minItems"}},
		{"missing-keynames.yaml", []string{"missing property 'keyNames'"}},
		{"bad-keyname.yaml", []string{"at '/keyNames/0'", "does not match pattern"}},
		{"addr-not-url.yaml", []string{"at '/addr'", "does not match pattern"}},
		{"addr-no-scheme.yaml", []string{"at '/addr'", "does not match pattern"}},
		{"typo-keyname.yaml", []string{"additional properties 'keyName' not allowed"}},
		{"extra-args.yaml", []string{"at '/extraArgs'", "maxItems"}},
		{"typo-nested.yaml", []string{"at '/auth'", "additional properties 'audiance' not allowed"}},
		{"bad-transitpath.yaml", []string{"at '/transitPath'", "does not match pattern"}},
		{"bad-auth-method.yaml", []string{"at '/auth/method'", "'kubernetes', 'approle', 'token', 'cert'"}},
		{"approle-no-secret-id.yaml", []string{"at '/auth/approle/secretIdFile'", "minLength"}},
		{"token-no-file.yaml", []string{"at '/auth/token/tokenFile'", "minLength"}},
		{"relative-ca-cert.yaml", []string{"at '/ca-cert'", "does not match pattern"}},
		{"cabundle-not-pem.yaml", []string{"at '/caBundle'", "does not match pattern"}},
		{"bad-socket-dir.yaml", []string{"at '/socket/hostDir'", "does not match pattern"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			vals := valuesFrom(t, []string{filepath.Join("testdata", "bad", tc.file)})
			c := loadChart(t)
			merged, err := chartutil.CoalesceValues(c, vals)
			if err != nil {
				t.Fatal(err)
			}
			if chartutil.ValidateAgainstSchema(c, merged) == nil {
				t.Error("values.schema.json accepts these values")
			}
			// The same values through `helm install`'s own path.
			_, err = install(c, vals, kubeVersion)
			if err == nil {
				t.Fatal("install succeeded, want a schema error")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// fileVars are the variables that name a file the plugin reads.
var fileVars = []string{
	"VAULT_CACERT", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY",
	"VAULT_KMS_TOKEN_FILE", "VAULT_KMS_SA_TOKEN_FILE", "VAULT_KMS_APPROLE_SECRET_ID_FILE",
}

// TestChartAndBinaryAgree gives the plugin's own configuration code exactly
// the environment the DaemonSet gives the container, and requires it to
// load; every variable the chart sets must be one the binary reads, and
// every file a variable names must be mounted in the container.
func TestChartAndBinaryAgree(t *testing.T) {
	known := config.VarNames()
	for _, s := range valueSets(t) {
		t.Run(s.name, func(t *testing.T) {
			r := render(t, s.values(t))
			vals := r.values(t)
			ds := r.daemonSet(t)
			c := pluginContainer(t, ds)
			env := r.containerEnv(t, c)

			for name := range env {
				if strings.HasPrefix(name, "VAULT_") && !slices.Contains(known, name) {
					t.Errorf("the chart sets %s, which the binary does not read", name)
				}
			}
			for _, name := range fileVars {
				if p, ok := env[name]; ok {
					checkMounted(t, ds.Spec.Template.Spec, c, name, p)
				}
			}

			// Only what the chart sets: clear every variable the binary reads.
			for _, name := range known {
				t.Setenv(name, "")
				os.Unsetenv(name)
			}
			for k, v := range env {
				t.Setenv(k, v)
			}
			cfg, err := config.Load()
			if err != nil {
				t.Fatalf("the plugin rejects the chart's environment: %v", err)
			}

			wantKeys := []string{}
			for _, k := range vals["keyNames"].([]any) {
				wantKeys = append(wantKeys, k.(string))
			}
			if !slices.Equal(cfg.KeyNames, wantKeys) {
				t.Errorf("key names = %v, want %v", cfg.KeyNames, wantKeys)
			}
			if want := strings.Trim(vals["transitPath"].(string), "/"); cfg.TransitPath != want {
				t.Errorf("transit path = %q, want %q", cfg.TransitPath, want)
			}
			auth, _ := vals["auth"].(map[string]any)
			wantMethod := "kubernetes"
			if m, ok := auth["method"].(string); ok {
				wantMethod = m
			}
			if cfg.AuthMethod != wantMethod {
				t.Errorf("auth method = %q, want %q", cfg.AuthMethod, wantMethod)
			}
			// The probes reach the health server: its port, and its host
			// when it listens on the node's loopback only.
			port := c.Ports[0].ContainerPort
			host, healthPort, err := net.SplitHostPort(cfg.HealthAddr)
			if err != nil || healthPort != strconv.Itoa(int(port)) {
				t.Errorf("health address = %q, want the probes' port %d", cfg.HealthAddr, port)
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.StrVal != c.Ports[0].Name {
					t.Errorf("probe %+v does not use the health port %q", p, c.Ports[0].Name)
					continue
				}
				if want := map[bool]string{true: "127.0.0.1"}[host == "127.0.0.1"]; p.HTTPGet.Host != want {
					t.Errorf("probe %s: host %q, want %q for health address %q", p.HTTPGet.Path, p.HTTPGet.Host, want, cfg.HealthAddr)
				}
			}
			if ca, ok := vals["caBundle"].(string); ok && ca != "" {
				if env["VAULT_CACERT"] != "/etc/vault-kms-plugin/ca/ca.crt" {
					t.Errorf("with caBundle, VAULT_CACERT = %q, want the mounted bundle", env["VAULT_CACERT"])
				}
			} else if p, _ := vals["ca-cert"].(string); env["VAULT_CACERT"] != p {
				t.Errorf("VAULT_CACERT = %q, want ca-cert %q", env["VAULT_CACERT"], p)
			}
		})
	}
}

// checkMounted requires the file path p (the value of variable name) to be
// served by one of the container's volume mounts, with the volume giving
// that very file: a node file at the same path, a file in a node directory
// mounted at the same path, the projected token, or the CA ConfigMap.
func checkMounted(t *testing.T, pod corev1.PodSpec, c corev1.Container, name, p string) {
	t.Helper()
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	if best == nil {
		t.Errorf("%s=%s: no volume mount serves this path", name, p)
		return
	}
	if !best.ReadOnly {
		t.Errorf("%s=%s: mount %q is not read-only", name, p, best.Name)
	}
	v := volumeByName(t, pod.Volumes, best.Name)
	rel := strings.TrimPrefix(strings.TrimPrefix(p, best.MountPath), "/")
	switch {
	case v.HostPath != nil:
		if hp := strings.TrimSuffix(v.HostPath.Path, "/") + "/" + rel; strings.TrimSuffix(hp, "/") != p {
			t.Errorf("%s=%s: the container path is node path %s: not the same path", name, p, hp)
		}
		wantType := corev1.HostPathDirectory
		if rel == "" {
			wantType = corev1.HostPathFile
		}
		if v.HostPath.Type == nil || *v.HostPath.Type != wantType {
			t.Errorf("%s=%s: hostPath type %v, want %s", name, p, v.HostPath.Type, wantType)
		}
	case v.Projected != nil:
		ok := slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool {
			return s.ServiceAccountToken != nil && s.ServiceAccountToken.Path == rel
		})
		if !ok {
			t.Errorf("%s=%s: the projected volume %q has no token at %q", name, p, v.Name, rel)
		}
	case v.ConfigMap != nil:
		if v.ConfigMap.Items != nil || rel == "" {
			t.Errorf("%s=%s: unexpected ConfigMap mount %+v", name, p, v.ConfigMap)
		}
	default:
		t.Errorf("%s=%s: served by volume %q of an unexpected kind", name, p, v.Name)
	}
}

// TestSocketPathIsOneAndTheSame: the socket the plugin listens on, the node
// directory mounted for it, the helm test pod's endpoint and mount, and the
// EncryptionConfiguration in NOTES.txt all name one path.
func TestSocketPathIsOneAndTheSame(t *testing.T) {
	for _, s := range valueSets(t) {
		t.Run(s.name, func(t *testing.T) {
			r := render(t, s.values(t))
			sock := r.values(t)["socket"].(map[string]any)
			dir := strings.TrimSuffix(sock["hostDir"].(string), "/")
			path := dir + "/" + sock["file"].(string)
			endpoint := "unix://" + path

			ds := r.daemonSet(t)
			c := pluginContainer(t, ds)
			if got := r.containerEnv(t, c)["VAULT_KMS_LISTEN"]; got != endpoint {
				t.Errorf("VAULT_KMS_LISTEN = %q, want %q", got, endpoint)
			}
			checkSocketDir(t, "DaemonSet", ds.Spec.Template.Spec, c, dir, corev1.HostPathDirectoryOrCreate)

			pod := r.testPod(t)
			pc := pod.Spec.Containers[0]
			if i := slices.Index(pc.Args, "-endpoint"); i < 0 || i+1 >= len(pc.Args) || pc.Args[i+1] != endpoint {
				t.Errorf("test pod args %q: want -endpoint %s", pc.Args, endpoint)
			}
			checkSocketDir(t, "test pod", pod.Spec, pc, dir, corev1.HostPathDirectory)

			if !strings.Contains(r.rel.Info.Notes, "endpoint: "+endpoint+"\n") {
				t.Errorf("NOTES.txt does not give endpoint %s:\n%s", endpoint, r.rel.Info.Notes)
			}
		})
	}
}

func checkSocketDir(t *testing.T, what string, pod corev1.PodSpec, c corev1.Container, dir string, typ corev1.HostPathType) {
	t.Helper()
	m := mountByName(t, c.VolumeMounts, "socket-dir")
	v := volumeByName(t, pod.Volumes, "socket-dir")
	if m.MountPath != dir {
		t.Errorf("%s: socket mount at %q, want %q", what, m.MountPath, dir)
	}
	if v.HostPath == nil || v.HostPath.Path != dir || v.HostPath.Type == nil || *v.HostPath.Type != typ {
		t.Errorf("%s: socket volume %+v, want hostPath %s of type %s", what, v.VolumeSource, dir, typ)
	}
}

// TestNotesEncryptionConfiguration: the EncryptionConfiguration NOTES.txt
// prints decodes strictly into the apiserver's own type.
func TestNotesEncryptionConfiguration(t *testing.T) {
	r := render(t, valuesFrom(t, []string{"testdata/vault-values.yaml"}))
	notes := r.rel.Info.Notes
	start := strings.Index(notes, "apiVersion: apiserver.config.k8s.io/v1")
	if start < 0 {
		t.Fatalf("no EncryptionConfiguration in NOTES.txt:\n%s", notes)
	}
	block, _, _ := strings.Cut(notes[start:], "\n\n")
	var ec apiserverv1.EncryptionConfiguration
	if err := strictYAML([]byte(block), &ec); err != nil {
		t.Fatalf("EncryptionConfiguration: %v\n%s", err, block)
	}
	if ec.Kind != "EncryptionConfiguration" || len(ec.Resources) != 1 || !slices.Equal(ec.Resources[0].Resources, []string{"secrets"}) {
		t.Fatalf("EncryptionConfiguration = %+v", ec)
	}
	p := ec.Resources[0].Providers
	if len(p) != 2 || p[0].KMS == nil || p[1].Identity == nil {
		t.Fatalf("providers = %+v, want kms then identity", p)
	}
	k := p[0].KMS
	if k.APIVersion != "v2" || k.Name != "vault" || k.Endpoint != "unix:///var/run/kmsplugin/socket.sock" ||
		k.Timeout == nil || k.Timeout.Duration.String() != "3s" {
		t.Errorf("kms provider = %+v", k)
	}
	for _, w := range []string{"COLD START", "no image pull secret", "no Secret volumes"} {
		if !strings.Contains(notes, w) {
			t.Errorf("NOTES.txt lacks %q", w)
		}
	}
}
