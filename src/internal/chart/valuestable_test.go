package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	tableStart = "<!-- values-table:start -->"
	tableEnd   = "<!-- values-table:end -->"
)

// TestValuesTableUpToDate: the values table of the chart's README is the
// one values.yaml's `# --` comments generate, and every key has a
// description. `make chart-docs` (this test with -update) rewrites it.
func TestValuesTableUpToDate(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := describeValues(src)
	if err != nil {
		t.Fatalf("values.yaml cannot generate the README's values table:\n%v", err)
	}
	want := valuesTable(docs)

	readmePath := filepath.Join(chartDir(t), "README.md")
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok := strings.Cut(string(readme), tableStart+"\n")
	got, after, ok2 := strings.Cut(rest, tableEnd)
	if !ok || !ok2 {
		t.Fatalf("README.md: no values table between %q and %q lines", tableStart, tableEnd)
	}
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(readmePath, []byte(before+tableStart+"\n"+want+tableEnd+after), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the values table of %s", readmePath)
		return
	}
	t.Errorf("README.md's values table differs from what values.yaml generates: run `make chart-docs`.\nfirst difference (golden: README.md, rendered: values.yaml), %s", firstDiff(got, want))
}

// TestValuesTableGenerator: what the generator makes of the forms a values
// file takes, and what it refuses.
func TestValuesTableGenerator(t *testing.T) {
	for _, tc := range []struct {
		name    string
		values  string
		want    string // the table's rows, without the header
		wantErr string // part of the error
	}{{
		name: "scalars, quoted strings and a type given for null",
		values: `# Free text above, not a description.

# -- Mount path
# of transit.
transitPath: transit
# -- Octal mode.
mode: "0600"
# -- Port.
port: 8787
# -- On or off.
on: false
# -- (int) Group id.
group: null
`,
		want: "| `transitPath` | string | `\"transit\"` | Mount path of transit. |\n" +
			"| `mode` | string | `\"0600\"` | Octal mode. |\n" +
			"| `port` | int | `8787` | Port. |\n" +
			"| `on` | bool | `false` | On or off. |\n" +
			"| `group` | int | `null` | Group id. |\n",
	}, {
		name: "nested maps, lists and documented maps on one line in the file's order",
		values: `auth:
  # -- Method.
  method: kubernetes
  approle:
    # -- Role id.
    roleId: ""
# -- Tolerations.
tolerations:
  - key: node-role.kubernetes.io/control-plane
    operator: Exists
# -- Resources; the keys under it need no description.
resources:
  requests:
    memory: 32Mi
  limits: {}
# -- Empty list.
extraEnv: []
`,
		want: "| `auth.method` | string | `\"kubernetes\"` | Method. |\n" +
			"| `auth.approle.roleId` | string | `\"\"` | Role id. |\n" +
			"| `tolerations` | list | `[{\"key\":\"node-role.kubernetes.io/control-plane\",\"operator\":\"Exists\"}]` | Tolerations. |\n" +
			"| `resources` | object | `{\"requests\":{\"memory\":\"32Mi\"},\"limits\":{}}` | Resources; the keys under it need no description. |\n" +
			"| `extraEnv` | list | `[]` | Empty list. |\n",
	}, {
		name: "a documented map whose keys have descriptions of their own",
		values: `# -- Alerting rules.
prometheusRule:
  # -- Create the rule.
  enabled: false
  rules: []
`,
		want: "| `prometheusRule` | object | `{\"enabled\":false,\"rules\":[]}` | Alerting rules. |\n" +
			"| `prometheusRule.enabled` | bool | `false` | Create the rule. |\n",
	}, {
		name: "multi-line strings and pipes stay on one row",
		values: `# -- A script | with a pipe.
script: |
  echo a | tr a b
  exit 0
`,
		want: "| `script` | string | `\"echo a \\| tr a b\\nexit 0\\n\"` | A script \\| with a pipe. |\n",
	}, {
		name: "keys with no default, commented out, at the top and nested",
		values: `# -- (string) Vault's URL. Required.
# addr: https://vault.example.com:8200

# -- (list) Keys, at least one.
# keyNames:
#   - kube-secrets

auth:
  # -- Method.
  method: jwt
  jwt:
    # -- (string) Path of the JWT file.
    # path: /var/run/jwt
    # -- Role.
    role: r
`,
		want: "| `addr` | string | unset; e.g. `\"https://vault.example.com:8200\"` | Vault's URL. Required. |\n" +
			"| `keyNames` | list | unset; e.g. `[\"kube-secrets\"]` | Keys, at least one. |\n" +
			"| `auth.method` | string | `\"jwt\"` | Method. |\n" +
			"| `auth.jwt.path` | string | unset; e.g. `\"/var/run/jwt\"` | Path of the JWT file. |\n" +
			"| `auth.jwt.role` | string | `\"r\"` | Role. |\n",
	}, {
		name:    "a leaf with no description",
		values:  "metrics:\n  dashboard:\n    # -- On.\n    enabled: false\n    labels: {}\n",
		wantErr: "values.yaml:5: metrics.dashboard.labels has no description",
	}, {
		name:    "a description with nothing after --",
		values:  "# --\nkey: 1\n",
		wantErr: "values.yaml:2: key: the `# --` line has no description",
	}, {
		name:    "null with no type",
		values:  "# -- Group.\ngroup: null\n",
		wantErr: "group: the default !!null says no type",
	}, {
		name:    "a description that documents no key",
		values:  "# -- Lost.\n\nkey: 1\n",
		wantErr: "values.yaml:1: a `# --` description that documents no key",
	}, {
		name:    "an unset key with no type",
		values:  "# -- Vault's URL.\n# addr: https://v:8200\n",
		wantErr: "addr is unset, so its type must be written",
	}, {
		name:    "not YAML",
		values:  "a: [\n",
		wantErr: "parse values.yaml",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := describeValues([]byte(tc.values))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := strings.SplitN(valuesTable(docs), "\n", 3)[2]
			if got != tc.want {
				t.Errorf("table rows:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
