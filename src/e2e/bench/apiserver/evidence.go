package apiserver

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metrics is one scrape of a /metrics page.
type metrics map[string]*dto.MetricFamily

func parseMetrics(code int, body string, err error) (metrics, error) {
	if err == nil && code != 200 {
		err = fmt.Errorf("status %d", code)
	}
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return metrics(fams), nil
}

// stat is what a counter or histogram adds up to over the series whose
// labels include want: count and sum for a histogram, the value for a
// counter or gauge.
type stat struct{ count, sum float64 }

func (m metrics) get(name string, want map[string]string) stat {
	var s stat
	f := m[name]
	if f == nil {
		return s
	}
	for _, series := range f.Metric {
		if !hasLabels(series, want) {
			continue
		}
		switch {
		case series.Histogram != nil:
			s.count += float64(series.Histogram.GetSampleCount())
			s.sum += series.Histogram.GetSampleSum()
		case series.Counter != nil:
			s.sum += series.Counter.GetValue()
		case series.Gauge != nil:
			s.sum += series.Gauge.GetValue()
		case series.Untyped != nil:
			s.sum += series.Untyped.GetValue()
		}
	}
	return s
}

func hasLabels(series *dto.Metric, want map[string]string) bool {
	found := 0
	for _, l := range series.Label {
		if v, ok := want[l.GetName()]; ok && (v == l.GetValue() || v == "*") {
			found++
		}
	}
	return found == len(want)
}

// delta is after minus before (before may be nil: a fresh process).
func delta(before, after metrics, name string, want map[string]string) stat {
	a := after.get(name, want)
	if before != nil {
		b := before.get(name, want)
		a.count -= b.count
		a.sum -= b.sum
	}
	return a
}

// mean is the average of a histogram's samples, 0 when it has none.
func (s stat) mean() time.Duration {
	if s.count == 0 {
		return 0
	}
	return time.Duration(s.sum / s.count * float64(time.Second))
}

// cpuTime is the user and system CPU a process has used so far, from
// /proc/PID/stat (0 when it cannot be read: the process is gone).
func cpuTime(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, _ := strconv.ParseInt(f, 10, 64)
		ticks += n
	}
	// USER_HZ is 100 on every Linux the bench runs on.
	return time.Duration(ticks) * 10 * time.Millisecond
}
