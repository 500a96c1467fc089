package chart

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// clusterHolding answers the chart's lookup with the objects a released
// chart installed: Helm's engine asks it for a client per kind. The
// objects are that chart's own render, as helm install wrote them.
type clusterHolding struct {
	client *dynamicfake.FakeDynamicClient
}

func (c clusterHolding) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, false, err
	}
	return c.client.Resource(gv.WithResource(strings.ToLower(kind) + "s")), true, nil
}

// installedBy renders a released chart with vals and returns a cluster
// holding its ConfigMaps.
func installedBy(t *testing.T, rc releasedChart, vals map[string]any) clusterHolding {
	t.Helper()
	r := renderChart(t, rc.load(t), vals)
	var objs []runtime.Object
	for _, cm := range all[*corev1.ConfigMap](r, "ConfigMap") {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cm)
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{Object: u}
		obj.SetAPIVersion("v1")
		obj.SetKind("ConfigMap")
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		t.Fatalf("chart %s rendered no ConfigMap", rc.version)
	}
	return clusterHolding{dynamicfake.NewSimpleDynamicClient(runtime.NewScheme(), objs...)}
}

// upgradeOn renders the current chart as `helm upgrade` does against a
// cluster, lookup included.
func upgradeOn(t *testing.T, cluster clusterHolding, vals map[string]any, isUpgrade bool) error {
	t.Helper()
	c := loadChart(t)
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps.KubeVersion = *kv
	top, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: namespace, IsUpgrade: isUpgrade, IsInstall: !isUpgrade, Revision: 2,
	}, caps)
	if err != nil {
		return err
	}
	_, err = engine.RenderWithClientProvider(c, top, cluster)
	return err
}

// TestSocketMoveRefusedOnUpgrade: an upgrade from every released chart
// that changes socket.hostDir or socket.file is refused, naming the old
// and new socket and the value that allows it; the same socket, an
// acknowledged move, and a first install pass.
func TestSocketMoveRefusedOnUpgrade(t *testing.T) {
	for _, rc := range releasedCharts(t) {
		t.Run(rc.version.Original(), func(t *testing.T) {
			before := valuesFrom(t, []string{"testdata/vault-values.yaml"})
			cluster := installedBy(t, rc, before)
			for _, tc := range []struct {
				name      string
				socket    string
				isUpgrade bool
				refused   bool
			}{
				{"same socket", "{}", true, false},
				{"same socket, trailing slash", "{hostDir: /var/run/kmsplugin/}", true, false},
				{"new directory", "{hostDir: /var/run/kms}", true, true},
				{"new file name", "{file: kms.sock}", true, true},
				{"new directory, acknowledged", "{hostDir: /var/run/kms, moveAcknowledged: true}", true, false},
				{"install next to it", "{hostDir: /var/run/kms}", false, false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					vals := valuesFrom(t, []string{"testdata/vault-values.yaml"})
					vals["socket"] = valuesYAML(t, "s: "+tc.socket)["s"]
					err := upgradeOn(t, cluster, vals, tc.isUpgrade)
					if !tc.refused {
						if err != nil {
							t.Fatalf("refused: %v", err)
						}
						return
					}
					if err == nil {
						t.Fatal("the socket moved without socket.moveAcknowledged")
					}
					for _, want := range []string{"from unix:///var/run/kmsplugin/socket.sock", "EncryptionConfiguration", "socket.moveAcknowledged=true"} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("error %q does not say %q", err, want)
						}
					}
				})
			}
		})
	}
}
