package apiserver

import "fmt"

// Target is one goal checked against the run's figures.
type Target struct {
	Goal     string
	Met      bool
	Measured bool
	Figure   string // what was measured, and by how much a missed goal missed
}

func (t Target) String() string {
	mark := "NOT met"
	switch {
	case !t.Measured:
		mark, t.Figure = "not measured", "this run did not measure it"
	case t.Met:
		mark = "met"
	}
	return fmt.Sprintf("- **%s**: %s: %s", mark, t.Goal, t.Figure)
}

// Targets are the goals of what the plugin costs an apiserver, as ratios
// of this run's figures.
func (r *Result) Targets() []Target {
	top := r.Options.Levels[len(r.Options.Levels)-1]
	var ts []Target
	for _, g := range []struct {
		prov string
		min  float64
	}{{provV2, 0.90}, {provV1On, 0.70}} {
		t := Target{Goal: fmt.Sprintf("%s: Secret creates/s at c=%d ≥ %.2f× identity", g.prov, top, g.min)}
		if p, id := r.point(g.prov, top), r.point(provIdentity, top); p != nil && id != nil && id.rate() > 0 {
			x := p.rate() / id.rate()
			t.Measured, t.Met = true, x >= g.min
			t.Figure = fmt.Sprintf("%.0f/s vs %.0f/s = %.2f×%s", p.rate(), id.rate(), x, shortBy(t.Met, g.min-x, "×"))
		}
		ts = append(ts, t)
	}

	t := Target{Goal: fmt.Sprintf("KMS v1 start-up to a LIST of %d Secrets ≥ 3× faster with group commit on than off", r.Options.Secrets)}
	if on, off := r.startup(provV1On), r.startup(provV1Off); on != nil && off != nil {
		a, b := on.median().total, off.median().total
		x := b.Seconds() / a.Seconds()
		t.Measured, t.Met = true, x >= 3
		t.Figure = fmt.Sprintf("off %s ÷ on %s = %.2f×%s", fmtDur(b), fmtDur(a), x, shortBy(t.Met, 3-x, "×"))
	}
	ts = append(ts, t)

	t = Target{Goal: fmt.Sprintf("KMS v2 start-up to a LIST of %d Secrets (≥ %d DEKs) ≤ 1.25× identity", r.Options.Secrets, r.Options.Slices)}
	if v2, id := r.startup(provV2), r.startup(provIdentity); v2 != nil && id != nil {
		a, b := v2.median().total, id.median().total
		x := a.Seconds() / b.Seconds()
		t.Measured, t.Met = true, x <= 1.25 && r.DEKs.deks >= r.Options.Slices
		t.Figure = fmt.Sprintf("%s vs %s = %.2f× over %d DEKs%s", fmtDur(a), fmtDur(b), x, r.DEKs.deks, shortBy(t.Met, x-1.25, "×"))
		if r.DEKs.deks < r.Options.Slices {
			t.Figure += fmt.Sprintf("; only %d distinct DEKs in etcd, want %d", r.DEKs.deks, r.Options.Slices)
		}
	}
	return append(ts, t)
}

// shortBy says by how much a goal was missed.
func shortBy(met bool, by float64, unit string) string {
	if met || by <= 0 {
		return ""
	}
	return fmt.Sprintf(" (missed by %.2f%s)", by, unit)
}

func (r *Result) point(prov string, c int) *point {
	for _, p := range r.Points {
		if p.provider == prov && p.c == c {
			return p
		}
	}
	return nil
}

func (r *Result) startup(prov string) *startup {
	for _, s := range r.Startups {
		if s.provider == prov {
			return s
		}
	}
	return nil
}
