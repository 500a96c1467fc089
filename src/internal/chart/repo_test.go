package chart

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// leafKeys lists the dotted paths of a values tree's leaves; lists and
// empty maps count as leaves, as the README's table has them.
func leafKeys(prefix string, v map[string]any) []string {
	var out []string
	for k, val := range v {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		if m, ok := val.(map[string]any); ok && len(m) > 0 && !opaqueKeys[p] {
			out = append(out, leafKeys(p, m)...)
			continue
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// opaqueKeys are maps handed to Kubernetes as they are; the README documents
// them as one row.
var opaqueKeys = map[string]bool{"resources": true, "nodeSelector": true}

// TestReadmeDocumentsEveryValue: the values table of the chart's README has
// a row for every key of values.yaml, and for the required keys that have no
// default there.
func TestReadmeDocumentsEveryValue(t *testing.T) {
	c := loadChart(t)
	readme, err := os.ReadFile(filepath.Join(chartDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		rows[m[1]] = true
	}
	want := append(leafKeys("", c.Values), "addr", "keyNames")
	for _, k := range want {
		if !documented(rows, k) {
			t.Errorf("README.md: no row for value %s, nor for a map holding it", k)
		}
	}
}

// documented reports whether key has a row, or a map above it has one: the
// generated table gives a documented map, such as one alert's settings, a
// single row showing its whole default.
func documented(rows map[string]bool, key string) bool {
	for p := key; ; {
		if rows[p] {
			return true
		}
		i := strings.LastIndex(p, ".")
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

// TestCIAgreesWithChart: the Vault set up by scripts/ci-kind-vault.sh is the
// one the ci values files expect.
func TestCIAgreesWithChart(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", "ci-kind-vault.sh"))
	if err != nil {
		t.Fatal(err)
	}
	shellVar := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindStringSubmatch(string(script))
		if m == nil {
			t.Fatalf("scripts/ci-kind-vault.sh sets no %s", name)
		}
		return m[1]
	}
	def := render(t, valuesFrom(t, []string{filepath.Join(chartDir(t), "ci", "default-values.yaml")}))
	defVals := def.values(t)
	auth := defVals["auth"].(map[string]any)
	tok := render(t, valuesFrom(t, []string{filepath.Join(chartDir(t), "ci", "token-values.yaml")})).values(t)

	for _, tc := range []struct{ what, script, chart string }{
		{"transit key", shellVar("KEY"), defVals["keyNames"].([]any)[0].(string)},
		{"service account", shellVar("PLUGIN_SA"), def.daemonSet(t).Spec.Template.Spec.ServiceAccountName},
		{"namespace", shellVar("PLUGIN_NAMESPACE"), namespace},
		{"role", shellVar("ROLE"), auth["role"].(string)},
		{"audience", shellVar("AUDIENCE"), auth["audience"].(string)},
		{"token file", shellVar("TOKEN_PATH"), tok["auth"].(map[string]any)["token"].(map[string]any)["tokenFile"].(string)},
	} {
		if tc.script != tc.chart {
			t.Errorf("%s: the CI script sets up %q, the chart's ci values use %q", tc.what, tc.script, tc.chart)
		}
	}
	if !strings.Contains(defVals["addr"].(string), "vault.vault.svc:8200") {
		t.Errorf("ci/default-values.yaml addr %q is not the script's Vault service", defVals["addr"])
	}

	var ct map[string]any
	readYAML(t, filepath.Join(repoRoot(t), "ct.yaml"), &ct)
	for k, want := range map[string]any{
		"target-branch": "main", "validate-maintainers": false, "check-version-increment": true, "namespace": namespace,
	} {
		if ct[k] != want {
			t.Errorf("ct.yaml %s = %v, want %v", k, ct[k], want)
		}
	}
	if dirs, _ := ct["chart-dirs"].([]any); !slices.Contains(dirs, any("charts")) {
		t.Errorf("ct.yaml chart-dirs = %v, want charts", ct["chart-dirs"])
	}
}

// TestWorkflowPinsActions: every action every workflow uses is pinned by
// full commit SHA, with the tag in a comment.
func TestWorkflowPinsActions(t *testing.T) {
	workflows, err := filepath.Glob(filepath.Join(repoRoot(t), ".github", "workflows", "*.y*ml"))
	if err != nil || len(workflows) < 2 {
		t.Fatalf("workflows %v (%v): want at least chart.yaml and release.yaml", workflows, err)
	}
	pinned := regexp.MustCompile(`^[\w.-]+/[\w.-]+@[0-9a-f]{40}$`)
	pins := map[string]string{} // action -> the first pin seen, which every workflow must share
	for _, path := range workflows {
		var wf map[string]any
		readYAML(t, path, &wf)
		data, _ := os.ReadFile(path)
		uses := regexp.MustCompile(`(?m)^\s*(?:- )?uses:\s*(\S+)(.*)$`).FindAllStringSubmatch(string(data), -1)
		if len(uses) == 0 {
			t.Errorf("%s: no uses:", filepath.Base(path))
		}
		for _, u := range uses {
			if !pinned.MatchString(u[1]) || !regexp.MustCompile(`#\s*v\d`).MatchString(u[2]) {
				t.Errorf("%s: %s: not pinned by commit SHA with a # vX comment", filepath.Base(path), strings.TrimSpace(u[0]))
			}
			action, _, _ := strings.Cut(u[1], "@")
			pin := u[1] + " " + strings.TrimSpace(u[2])
			if prev, ok := pins[action]; ok && prev != pin {
				t.Errorf("%s: %s is pinned as %q, elsewhere as %q: pin it once", filepath.Base(path), action, pin, prev)
			}
			pins[action] = pin
		}
	}
	data, _ := os.ReadFile(filepath.Join(repoRoot(t), ".github", "workflows", "chart.yaml"))
	if !strings.Contains(string(data), "kindest/node:v1.29") || !regexp.MustCompile(`kindest/node:v[\d.]+@sha256:[0-9a-f]{64}`).Match(data) {
		t.Error("the workflow must test the kubeVersion floor (1.29) on kind node images pinned by digest")
	}
}

func readYAML(t testing.TB, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
