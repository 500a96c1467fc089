package chart

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

// releasedChart is a copy of the chart as it was released, kept under
// testdata/released/<chart version>/vault-kms-plugin by
// scripts/release-chart-snapshot.sh.
type releasedChart struct {
	version *semver.Version
	dir     string
}

func releasedCharts(t testing.TB) []releasedChart {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "released", "*", "vault-kms-plugin"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no released chart under testdata/released (%v): keep at least the last one", err)
	}
	var out []releasedChart
	for _, d := range dirs {
		v, err := semver.StrictNewVersion(filepath.Base(filepath.Dir(d)))
		if err != nil {
			t.Fatalf("%s: the directory is not named after a SemVer version: %v", d, err)
		}
		out = append(out, releasedChart{version: v, dir: d})
	}
	slices.SortFunc(out, func(a, b releasedChart) int { return a.version.Compare(b.version) })
	return out
}

func (rc releasedChart) load(t testing.TB) *chart.Chart {
	t.Helper()
	c, err := loader.Load(rc.dir)
	if err != nil {
		t.Fatalf("load %s: %v", rc.dir, err)
	}
	if c.Metadata.Version != rc.version.Original() {
		t.Fatalf("%s holds chart version %s", rc.dir, c.Metadata.Version)
	}
	return c
}

// upgradeSet is a values file someone may hold for a released chart.
type upgradeSet struct {
	name string
	// required: the released chart accepted it (its own ci values, the
	// users' vault-values.yaml, its values.yaml as a starting point); the
	// others are tried where the released chart accepts them.
	required bool
	values   func(t testing.TB) map[string]any
}

func upgradeSets(t testing.TB, rc releasedChart) []upgradeSet {
	t.Helper()
	files := func(fs ...string) func(testing.TB) map[string]any {
		return func(t testing.TB) map[string]any { return valuesFrom(t, fs) }
	}
	sets := []upgradeSet{
		{name: "vault-values", required: true, values: files("testdata/vault-values.yaml")},
		// Its values.yaml copied whole and completed with the two required
		// keys, as a user starting from `helm show values` would.
		{name: "released-values.yaml", required: true, values: func(t testing.TB) map[string]any {
			v := valuesFrom(t, []string{filepath.Join(rc.dir, "values.yaml")})
			v["addr"] = "https://vault.example.com:8200"
			v["keyNames"] = []any{"kube-secrets"}
			return v
		}},
		{name: "approle", values: files("testdata/approle-values.yaml")},
		{name: "full", values: files("testdata/full-values.yaml")},
		{name: "ca-bundle", values: func(t testing.TB) map[string]any {
			return valuesFrom(t, []string{"testdata/vault-values.yaml"}, "caBundle=testdata/ca.pem")
		}},
	}
	ci, err := filepath.Glob(filepath.Join(rc.dir, "ci", "*-values.yaml"))
	if err != nil || len(ci) == 0 {
		t.Fatalf("no ci/*-values.yaml in %s (%v)", rc.dir, err)
	}
	for _, f := range ci {
		sets = append(sets, upgradeSet{name: "released-ci-" + strings.TrimSuffix(filepath.Base(f), "-values.yaml"), required: true, values: files(f)})
	}
	return sets
}

// envChangesAllowed lists the variables an upgrade may change for the same
// values, with the reason. A change to the socket path (VAULT_KMS_LISTEN)
// is never allowed: kube-apiserver's EncryptionConfiguration names it.
var envChangesAllowed = map[string]string{
	// 0.2.0 runs on the node's network by default, where /metrics stays on
	// the node's loopback unless the values ask for it (CHANGELOG.md).
	"VAULT_KMS_HEALTH_ADDR": "hostNetwork is the default; the health server listens on the node's 127.0.0.1",
	// 0.2.0 writes socket.mode out; its default is the binary's own.
	"VAULT_KMS_SOCKET_MODE": "socket.mode is written out; its default 0600 is the plugin's own default",
	// 0.2.0 derives GOMEMLIMIT from resources.limits.memory.
	"MEMORY_LIMIT_MIB": "the container's memory limit, read by GOMEMLIMIT",
	"GOMEMLIMIT":       "the Go runtime collects harder near the container's memory limit",
}

// TestUpgradeFromReleasedChart renders every released chart and the
// current one with the same values, as `helm upgrade` would go from one to
// the other, and fails if the upgrade would break: a values file the
// released chart accepted is refused, or the DaemonSet's name or immutable
// selector, the socket, or the plugin's environment changes.
func TestUpgradeFromReleasedChart(t *testing.T) {
	cur := loadChart(t)
	for _, rc := range releasedCharts(t) {
		old := rc.load(t)
		t.Run(rc.version.Original(), func(t *testing.T) {
			for _, s := range upgradeSets(t, rc) {
				t.Run(s.name, func(t *testing.T) {
					oldRel, err := install(old, s.values(t), kubeVersion)
					if err != nil {
						if s.required {
							t.Fatalf("the released chart %s refuses these values: %v", rc.version, err)
						}
						// Nothing to keep compatible: the old chart refused it too.
						t.Logf("not valid for the released chart %s, so not compared: %v", rc.version, err)
						return
					}
					merged, err := chartutil.CoalesceValues(cur, s.values(t))
					if err != nil {
						t.Fatal(err)
					}
					if err := chartutil.ValidateAgainstSchema(cur, merged); err != nil {
						t.Fatalf("values valid for chart %s are refused by the current schema: %v", rc.version, err)
					}
					if _, err := install(cur, s.values(t), kubeVersion); err != nil {
						t.Fatalf("values valid for chart %s are refused by the current chart: %v", rc.version, err)
					}
					before := decodeRelease(t, oldRel)
					after := renderChart(t, cur, s.values(t))
					compareUpgrade(t, before, after)
				})
			}
		})
	}
}

func compareUpgrade(t *testing.T, before, after *rendered) {
	t.Helper()
	ob, nb := before.daemonSet(t), after.daemonSet(t)
	if ob.Name != nb.Name || ob.Namespace != nb.Namespace {
		t.Errorf("DaemonSet %s/%s becomes %s/%s: helm would create a second one next to the first", ob.Namespace, ob.Name, nb.Namespace, nb.Name)
	}
	if !equal(ob.Spec.Selector, nb.Spec.Selector) {
		t.Errorf("DaemonSet selector %v becomes %v: the selector is immutable, the upgrade would fail", ob.Spec.Selector, nb.Spec.Selector)
	}
	for k, v := range nb.Spec.Selector.MatchLabels {
		if nb.Spec.Template.Labels[k] != v {
			t.Errorf("the new pod template lacks selector label %s=%s", k, v)
		}
	}
	oc, nc := pluginContainer(t, ob), pluginContainer(t, nb)
	oe, ne := before.containerEnv(t, oc), after.containerEnv(t, nc)
	names := maps.Clone(oe)
	maps.Copy(names, ne)
	for _, k := range slices.Sorted(maps.Keys(names)) {
		if oe[k] == ne[k] {
			continue
		}
		if why, ok := envChangesAllowed[k]; ok {
			t.Logf("%s: %q becomes %q (allowed: %s)", k, oe[k], ne[k], why)
			continue
		}
		t.Errorf("%s: %q becomes %q for the same values (if intended, list it in envChangesAllowed and in CHANGELOG.md)", k, oe[k], ne[k])
	}
	ov := volumeByName(t, ob.Spec.Template.Spec.Volumes, "socket-dir")
	nv := volumeByName(t, nb.Spec.Template.Spec.Volumes, "socket-dir")
	if !equal(ov.VolumeSource, nv.VolumeSource) {
		t.Errorf("socket volume %+v becomes %+v", ov.VolumeSource, nv.VolumeSource)
	}
	if ob.Spec.Template.Spec.ServiceAccountName != nb.Spec.Template.Spec.ServiceAccountName {
		t.Errorf("service account %q becomes %q: Vault's role is bound to the old name",
			ob.Spec.Template.Spec.ServiceAccountName, nb.Spec.Template.Spec.ServiceAccountName)
	}
	if ob.Spec.Template.Spec.SecurityContext.RunAsUser == nil || nb.Spec.Template.Spec.SecurityContext.RunAsUser == nil ||
		*ob.Spec.Template.Spec.SecurityContext.RunAsUser != *nb.Spec.Template.Spec.SecurityContext.RunAsUser {
		t.Error("the pod's user changes: the socket directory's owner would no longer match")
	}
}

// TestChartVersionMoves: the chart's version is SemVer, is not below a
// released one, and moves with every change: if it is still a released
// version, the chart must be exactly the released copy. (ct's
// check-version-increment does the same in CI against the target branch.)
func TestChartVersionMoves(t *testing.T) {
	cur := loadChart(t)
	v, err := semver.StrictNewVersion(cur.Metadata.Version)
	if err != nil {
		t.Fatalf("Chart.yaml version %q is not SemVer: %v", cur.Metadata.Version, err)
	}
	for _, rc := range releasedCharts(t) {
		switch {
		case v.LessThan(rc.version):
			t.Errorf("chart version %s is below the released %s", v, rc.version)
		case v.Equal(rc.version):
			if diff := treeDiff(t, chartDir(t), rc.dir); diff != "" {
				t.Errorf("the chart differs from the released %s but keeps its version: bump version in Chart.yaml (and add a CHANGELOG.md entry). First difference: %s", rc.version, diff)
			}
		}
	}
	changelog, err := os.ReadFile(filepath.Join(repoRoot(t), "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(changelog), "Chart "+cur.Metadata.Version) {
		t.Errorf("CHANGELOG.md says nothing about chart %s", cur.Metadata.Version)
	}
}

// treeDiff names the first file that differs between two directories, or
// returns "".
func treeDiff(t testing.TB, a, b string) string {
	t.Helper()
	read := func(root string) map[string][]byte {
		files := map[string][]byte{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			files[rel], err = os.ReadFile(p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	fa, fb := read(a), read(b)
	for _, name := range slices.Sorted(maps.Keys(fa)) {
		other, ok := fb[name]
		switch {
		case !ok:
			return name + " is new"
		case !bytes.Equal(fa[name], other):
			return name + " changed"
		}
	}
	for _, name := range slices.Sorted(maps.Keys(fb)) {
		if _, ok := fa[name]; !ok {
			return name + " was removed"
		}
	}
	return ""
}
