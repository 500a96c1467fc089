package chart

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"
)

// codeBlock is one fenced block of a Markdown file, de-indented, with the
// section (## heading) it is in.
type codeBlock struct {
	lang, section, text string
	line                int
}

func codeBlocks(t testing.TB, md string) []codeBlock {
	t.Helper()
	var out []codeBlock
	lines := strings.Split(md, "\n")
	section := ""
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "## ") {
			section = strings.TrimPrefix(l, "## ")
		}
		trimmed := strings.TrimLeft(l, " ")
		if !strings.HasPrefix(trimmed, "```") || trimmed == "```" {
			continue
		}
		indent := len(l) - len(trimmed)
		b := codeBlock{lang: strings.TrimPrefix(trimmed, "```"), section: section, line: i + 1}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, strings.TrimPrefix(lines[i], strings.Repeat(" ", indent)))
		}
		if i == len(lines) {
			t.Fatalf("line %d: the code block is not closed", b.line)
		}
		b.text = strings.Join(body, "\n") + "\n"
		out = append(out, b)
	}
	return out
}

// TestPlatformsDoc: every EncryptionConfiguration in docs/platforms.md,
// standalone or inside RKE's cluster.yaml, decodes strictly into the
// apiserver's own type and names the chart's socket; each platform has
// one, the etcd check and the values it needs; every chart values file in
// it installs.
func TestPlatformsDoc(t *testing.T) {
	doc := readFile(t, "docs/platforms.md")
	endpoint := "unix://" + render(t, valuesFrom(t, []string{"testdata/vault-values.yaml"})).
		daemonSet(t).Spec.Template.Spec.Volumes[0].HostPath.Path + "/socket.sock"
	if endpoint != "unix:///var/run/kmsplugin/socket.sock" {
		t.Fatalf("the chart's default socket is %s", endpoint)
	}

	configs := map[string][]string{} // section -> "v1"/"v2" per configuration
	var talosEC []byte
	valuesFiles := 0
	for _, b := range codeBlocks(t, doc) {
		if b.lang != "yaml" {
			continue
		}
		var m map[string]any
		if err := yaml.UnmarshalStrict([]byte(b.text), &m); err != nil {
			t.Errorf("line %d: %v", b.line, err)
			continue
		}
		var ec []byte
		switch {
		case m["kind"] == "EncryptionConfiguration":
			ec = []byte(b.text)
		case m["kind"] == "KubeEtcdEncryptionConfig":
			// Talos: the file without apiVersion and kind, under config.
			inner, ok := m["config"].(map[string]any)
			if !ok {
				t.Errorf("line %d: KubeEtcdEncryptionConfig without config", b.line)
				continue
			}
			if _, ok := inner["kind"]; ok {
				t.Errorf("line %d: KubeEtcdEncryptionConfig's config must not hold kind", b.line)
			}
			inner["apiVersion"], inner["kind"] = "apiserver.config.k8s.io/v1", "EncryptionConfiguration"
			ec, _ = yaml.Marshal(inner)
			talosEC = ec
		case dig(m, "services", "kube-api", "secrets_encryption_config", "custom_config") != nil:
			kubeAPI := dig(m, "services", "kube-api").(map[string]any)
			if !slices.Contains(kubeAPI["extra_binds"].([]any), any("/var/run/kmsplugin:/var/run/kmsplugin")) {
				t.Errorf("line %d: RKE's kube-api lacks the extra_binds of the socket directory", b.line)
			}
			if dig(m, "services", "kube-api", "secrets_encryption_config", "enabled") != true {
				t.Errorf("line %d: secrets_encryption_config is not enabled", b.line)
			}
			ec, _ = yaml.Marshal(dig(m, "services", "kube-api", "secrets_encryption_config", "custom_config"))
		case regexp.MustCompile(`^# [\w-]+-values\.yaml\b`).MatchString(b.text):
			valuesFiles++
			checkValuesBlock(t, b, m)
			continue
		case m["spec"] != nil:
			var pod corev1.Pod
			if err := strictYAML([]byte(b.text), &pod); err != nil {
				t.Errorf("line %d: not a Pod: %v", b.line, err)
			}
			continue
		default:
			continue
		}
		var c apiserverv1.EncryptionConfiguration
		if err := strictYAML(ec, &c); err != nil {
			t.Errorf("line %d: %v\n%s", b.line, err, ec)
			continue
		}
		configs[b.section] = append(configs[b.section], checkEncryptionConfig(t, b.line, c, endpoint))
	}
	for section, want := range map[string][]string{
		"The EncryptionConfiguration": {"v2", "v1"},
		"kubeadm":                     {"v2"},
		"RKE (Rancher Kubernetes Engine, `cluster.yaml`)": {"v2", "v1"},
		"RKE2":  {"v2", "v1"},
		"k3s":   {"v2", "v1"},
		"kind":  {"identity", "v2"},
		"Talos": {"v2"},
	} {
		if !slices.Equal(configs[section], want) {
			t.Errorf("section %q: EncryptionConfigurations %v, want %v", section, configs[section], want)
		}
	}
	if len(configs) != 7 {
		t.Errorf("EncryptionConfigurations in sections %v", slices.Sorted(maps.Keys(configs)))
	}
	if valuesFiles < 3 {
		t.Errorf("%d chart values files (# <name>-values.yaml blocks), want RKE's, RKE2's and Talos'", valuesFiles)
	}
	// Talos' own secretbox provider stays, second, so that the Secrets it
	// encrypted stay readable.
	var talos apiserverv1.EncryptionConfiguration
	if err := strictYAML(talosEC, &talos); err != nil || len(talos.Resources) != 1 ||
		len(talos.Resources[0].Providers) != 3 || talos.Resources[0].Providers[1].Secretbox == nil {
		t.Errorf("Talos: want kms, then Talos' secretbox, then identity: %v %+v", err, talos)
	}

	// Each platform's section checks etcd, and the page says what
	// encryption at rest does not do.
	sections := regexp.MustCompile(`(?m)^## `).Split(doc, -1)
	for _, s := range sections {
		name, _, _ := strings.Cut(s, "\n")
		if !slices.Contains([]string{"kubeadm", "RKE2", "k3s", "kind"}, name) && !strings.HasPrefix(name, "RKE (") {
			continue
		}
		if !strings.Contains(s, "etcdctl") || !strings.Contains(s, "get /registry/secrets/default/secret1") ||
			!strings.Contains(s, "k8s:enc:kms:v2:vault:") {
			t.Errorf("section %s has no etcdctl check showing k8s:enc:kms:v2:vault:", name)
		}
	}
	// kubeadm, RKE2 and k3s on the node, RKE in its etcd container; kind's
	// etcd image has no shell to set the variable with (its etcdctl speaks
	// v3 by default).
	if n := strings.Count(doc, "ETCDCTL_API=3"); n < 4 {
		t.Errorf("ETCDCTL_API=3 appears %d times", n)
	}
	for _, want := range []string{
		"It does not hide Secrets from the Kubernetes API.",
		"`kubectl get secret`",
		"cachesize: 1000",
		"/var/run/kmsplugin:/var/run/kmsplugin",
		"--encryption-provider-config=/etc/kubernetes/enc/encryption-config.yaml",
		// Talos: its apiserver is not root, and it writes the file itself.
		"group: 65534",
		"mode: \"0660\"",
		"kind: KubeEtcdEncryptionConfig",
		"extraVolumes:",
		"mountPath: /var/run/kmsplugin",
	} {
		if !strings.Contains(strings.Join(strings.Fields(doc), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("docs/platforms.md lacks %q", want)
		}
	}
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// checkEncryptionConfig checks one configuration and says which KMS API it
// uses.
func checkEncryptionConfig(t *testing.T, line int, c apiserverv1.EncryptionConfiguration, endpoint string) string {
	t.Helper()
	if c.Kind != "EncryptionConfiguration" || c.APIVersion != "apiserver.config.k8s.io/v1" ||
		len(c.Resources) != 1 || !slices.Equal(c.Resources[0].Resources, []string{"secrets"}) {
		t.Errorf("line %d: %+v", line, c)
		return ""
	}
	p := c.Resources[0].Providers
	if len(p) == 1 && p[0].Identity != nil {
		return "identity" // encrypts nothing: a starting point
	}
	if len(p) < 2 || p[0].KMS == nil || p[len(p)-1].Identity == nil {
		t.Errorf("line %d: providers %+v, want kms first and identity last", line, p)
		return ""
	}
	k := p[0].KMS
	if k.Name != "vault" || k.Endpoint != endpoint || k.Timeout == nil || k.Timeout.Duration.String() != "3s" {
		t.Errorf("line %d: kms %+v, want name vault, endpoint %s, timeout 3s", line, k, endpoint)
	}
	switch k.APIVersion {
	case "v2":
		if k.CacheSize != nil {
			t.Errorf("line %d: cachesize with KMS v2 (it has no DEK cache setting)", line)
		}
		return "v2"
	case "", "v1":
		if k.CacheSize == nil || *k.CacheSize <= 0 {
			t.Errorf("line %d: KMS v1 without a cachesize", line)
		}
		return "v1"
	}
	t.Errorf("line %d: kms apiVersion %q", line, k.APIVersion)
	return ""
}

// checkValuesBlock installs the chart with the users' vault-values.yaml and
// a values file from the docs, and checks that its placement took.
func checkValuesBlock(t *testing.T, b codeBlock, m map[string]any) {
	t.Helper()
	vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
	for k, v := range m {
		vals[k] = v
	}
	rel, err := install(loadChart(t), vals, kubeVersion)
	if err != nil {
		t.Errorf("line %d: the chart refuses these values: %v", b.line, err)
		return
	}
	spec := decodeRelease(t, rel).daemonSet(t).Spec.Template.Spec
	want := map[string]string{}
	for k, v := range m["nodeSelector"].(map[string]any) {
		if v != nil {
			want[k] = v.(string)
		}
	}
	if !maps.Equal(spec.NodeSelector, want) {
		t.Errorf("line %d: nodeSelector %v, want %v", b.line, spec.NodeSelector, want)
	}
	if len(spec.Tolerations) != len(m["tolerations"].([]any)) {
		t.Errorf("line %d: tolerations %v", b.line, spec.Tolerations)
	}
}

// TestDocumentedVersions: the versions the chart README and the docs show
// in commands are the current ones: --version and chart packages are the
// chart's version, image tags and release tags are VERSION.
func TestDocumentedVersions(t *testing.T) {
	chartVersion := loadChart(t).Metadata.Version
	appVersion := strings.TrimSpace(readFile(t, "VERSION"))
	for _, f := range []string{"charts/vault-kms-plugin/README.md", "docs/platforms.md"} {
		text := readFile(t, f)
		for _, tc := range []struct {
			re, want string
		}{
			{`--version (\d+\.\d+\.\d+)`, chartVersion},
			{`vault-kms-plugin-(\d+\.\d+\.\d+)\.tgz`, chartVersion},
			{`charts/vault-kms-plugin:(\d+\.\d+\.\d+)`, chartVersion},
			{`ghcr\.io/vault-kms-plugin/vault-kms-plugin:(\d+\.\d+\.\d+)`, appVersion},
			{`refs/tags/v(\d+\.\d+\.\d+)`, appVersion},
		} {
			for _, m := range regexp.MustCompile(tc.re).FindAllStringSubmatch(text, -1) {
				if m[1] != tc.want {
					t.Errorf("%s: %q, want %s", f, m[0], tc.want)
				}
			}
		}
	}
}
