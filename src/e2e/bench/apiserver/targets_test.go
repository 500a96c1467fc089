package apiserver

import (
	"strings"
	"testing"
	"time"
)

// result is a Result with identity and the KMS figures given, for the
// targets' arithmetic.
func result(v2Rate, v1Rate float64, v1On, v1Off, v2Start time.Duration, deks int) *Result {
	pt := func(prov string, rate float64) *point {
		return &point{provider: prov, c: 64, ok: int(rate * 10), window: 10 * time.Second}
	}
	start := func(prov string, totals ...time.Duration) *startup {
		s := &startup{provider: prov}
		for _, t := range totals {
			s.runs = append(s.runs, startRun{total: t})
		}
		return s
	}
	return &Result{
		Options: Options{Levels: []int{1, 64}, Secrets: 10000, Slices: 20},
		Points:  []*point{pt(provIdentity, 1000), pt(provV2, v2Rate), pt(provV1On, v1Rate)},
		Startups: []*startup{
			start(provIdentity, 10*time.Second, 12*time.Second, 11*time.Second),
			start(provV1On, v1On), start(provV1Off, v1Off), start(provV2, v2Start),
		},
		DEKs: dekCount{objects: 10000, deks: deks, keyIDs: deks},
	}
}

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		res    *Result
		met    []bool
		missed string // in the figure of the first target missed
	}{
		{"all met at the bounds", result(900, 700, 10*time.Second, 30*time.Second, 13750*time.Millisecond, 20), []bool{true, true, true, true}, ""},
		{"v2 creates short", result(850, 700, 10*time.Second, 30*time.Second, 11*time.Second, 20), []bool{false, true, true, true}, "missed by 0.05×"},
		{"v1 start-up short", result(950, 800, 10*time.Second, 20*time.Second, 11*time.Second, 20), []bool{true, true, false, true}, "missed by 1.00×"},
		// The median of identity's 10, 11 and 12 s is 11 s: 14 s is 1.27×.
		{"v2 start-up slow", result(950, 800, 10*time.Second, 40*time.Second, 14*time.Second, 20), []bool{true, true, true, false}, "missed by 0.02×"},
		{"too few DEKs", result(950, 800, 10*time.Second, 40*time.Second, 11*time.Second, 19), []bool{true, true, true, false}, "only 19 distinct DEKs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := tc.res.Targets()
			if len(ts) != len(tc.met) {
				t.Fatalf("%d targets, want %d", len(ts), len(tc.met))
			}
			for i, tg := range ts {
				if !tg.Measured || tg.Met != tc.met[i] {
					t.Errorf("target %d (%s): measured %t, met %t, want met %t: %s", i, tg.Goal, tg.Measured, tg.Met, tc.met[i], tg.Figure)
				}
				if !tg.Met && !strings.Contains(tg.Figure, tc.missed) {
					t.Errorf("target %d's figure %q does not say %q", i, tg.Figure, tc.missed)
				}
			}
		})
	}
}

func TestTargetsWithoutFigures(t *testing.T) {
	res := &Result{Options: Options{Levels: []int{64}, Secrets: 10000, Slices: 20}}
	for _, tg := range res.Targets() {
		if tg.Measured || tg.Met || !strings.Contains(tg.String(), "not measured") {
			t.Errorf("%s: measured %t, met %t: %s", tg.Goal, tg.Measured, tg.Met, tg)
		}
	}
}

func TestPercentileAndMedian(t *testing.T) {
	p := &point{}
	for i := 1; i <= 100; i++ {
		p.lat = append(p.lat, time.Duration(i)*time.Millisecond)
	}
	s := &startup{runs: []startRun{{total: 3 * time.Second}, {total: time.Second}, {total: 2 * time.Second}, {total: 4 * time.Second}}}
	for _, tc := range []struct {
		name      string
		got, want time.Duration
	}{
		{"p50", p.pct(0.5), 51 * time.Millisecond},
		{"p99", p.pct(0.99), 100 * time.Millisecond},
		{"p50 of none", (&point{}).pct(0.5), 0},
		{"median of four: the lower middle", s.median().total, 2 * time.Second},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %s, want %s", tc.name, tc.got, tc.want)
		}
	}
}
