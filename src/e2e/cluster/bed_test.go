package cluster

import (
	"context"
	"encoding/base64"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
)

// testBed is the control plane under test (bed.Bed) and what the test
// wrote to it.
type testBed struct {
	*bed.Bed
	top     *testing.T // owns the processes: they live as long as the whole test
	hostDir string     // the control-plane node's filesystem root

	plugin   *procs.Process
	pod      *podPlan // how the plugin runs (from the rendered chart)
	pluginN  int      // plugin starts so far
	rendered *rendered

	// written is every Secret the test stored successfully: namespace/name
	// → data. Nothing may be lost.
	written map[string]map[string][]byte
	seq     int

	vaultSaved int // bytes of the running Vault's log already in vault.log
}

// newTestBed is a bed in a temporary directory, owned by the whole test,
// with the plugin's node filesystem root at hostDir ("" for one of its
// own).
func newTestBed(t *testing.T, hostDir string) *testBed {
	work := t.TempDir()
	if hostDir == "" {
		hostDir = filepath.Join(work, "node")
		must(t, os.MkdirAll(hostDir, 0o755))
	}
	return &testBed{Bed: bed.New(t, work), top: t, hostDir: hostDir, written: map[string]map[string][]byte{}}
}

const testNS = "e2e"

// --- metrics ------------------------------------------------------------

type metrics map[string]*dto.MetricFamily

func scrape(t testing.TB, get func() (int, string, error)) metrics {
	t.Helper()
	code, body, err := get()
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v\n%.2000s", code, err, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return metrics(fams)
}

// sum adds the values of every series of name whose labels include want.
func (m metrics) sum(name string, want map[string]string) float64 {
	var total float64
	for _, s := range m.series(name, want) {
		switch {
		case s.Counter != nil:
			total += s.Counter.GetValue()
		case s.Gauge != nil:
			total += s.Gauge.GetValue()
		case s.Untyped != nil:
			total += s.Untyped.GetValue()
		}
	}
	return total
}

func (m metrics) series(name string, want map[string]string) []*dto.Metric {
	f, ok := m[name]
	if !ok {
		return nil
	}
	var out []*dto.Metric
	for _, s := range f.Metric {
		labels := map[string]string{}
		for _, l := range s.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// labelValues is the set of values label takes across name's series
// matching want.
func (m metrics) labelValues(name, label string, want map[string]string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m.series(name, want) {
		for _, l := range s.Label {
			if l.GetName() == label && s.Counter != nil {
				out[l.GetValue()] += s.Counter.GetValue()
			}
		}
	}
	return out
}

// --- helpers --------------------------------------------------------------

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
