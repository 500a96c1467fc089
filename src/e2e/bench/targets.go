package main

import (
	"fmt"
	"io"
)

// target is one of the plugin's performance goals, checked against the
// run's figures.
type target struct {
	goal   string
	met    bool
	figure string // what was measured; "not measured" when missing
}

func (t target) String() string {
	mark := "NOT met"
	if t.met {
		mark = "met"
	}
	if t.figure == "" {
		mark, t.figure = "not measured", "this run did not measure it"
	}
	return fmt.Sprintf("- **%s**: %s: %s", mark, t.goal, t.figure)
}

// checkTargets evaluates the targets on the plugin's default, group
// commit on.
func (r *report) checkTargets() []target {
	var ts []target
	v2enc := pathID{apiV2, "encrypt", "on"}
	v1enc := pathID{apiV1, "encrypt", "on"}

	t := target{goal: "v2 Encrypt p50 at c=1 within 1.10× of the floor (direct encrypt p50 + bare hop p50)"}
	if p, floor := r.find(v2enc, 1), r.floorAt1("encrypt"); p != nil && floor > 0 {
		x := float64(p.res.pct(0.5)) / float64(floor)
		t.met, t.figure = x <= 1.10, fmt.Sprintf("%s = %.2f× the floor of %s", fmtDur(p.res.pct(0.5)), x, fmtDur(floor))
		if f := r.find(pathID{apiFwd, "encrypt", ""}, 1); f != nil {
			t.figure += fmt.Sprintf(" (the minimal forwarder: %.2f×)", float64(f.res.pct(0.5))/float64(floor))
		}
	}
	ts = append(ts, t)

	for _, base := range []struct {
		id   pathID
		name string
	}{{pathID{apiDirect, "encrypt", ""}, "direct transit encrypt"}, {pathID{apiV1, "encrypt", "off"}, "group commit off"}} {
		t = target{goal: "v1 Encrypt throughput at c=128 ≥ 3× " + base.name}
		if p, b := r.find(v1enc, 128), r.find(base.id, 128); p != nil && b != nil {
			x := p.res.rate() / b.res.rate()
			t.met, t.figure = x >= 3, fmt.Sprintf("%.0f ops/s = %.2f× %s (%.0f ops/s)", p.res.rate(), x, base.name, b.res.rate())
		}
		ts = append(ts, t)
	}

	on, off := r.plugin("on"), r.plugin("off")
	t = target{goal: fmt.Sprintf("decrypt storm of %d ≥ 3× faster with group commit", r.o.storm)}
	if on != nil && off != nil {
		x := off.storm.elapsed.Seconds() / on.storm.elapsed.Seconds()
		t.met, t.figure = x >= 3, fmt.Sprintf("%s on vs %s off = %.2f×", fmtDur(on.storm.elapsed), fmtDur(off.storm.elapsed), x)
	}
	ts = append(ts, t)

	t = target{goal: "0 Vault requests per 1,000 Status"}
	if on != nil {
		t.met, t.figure = on.statusCost.vaultReqs == 0, fmt.Sprintf("%.1f per 1,000 (%d requests for %d calls)",
			r.statusPer1000(on), on.statusCost.vaultReqs, r.o.status)
	}
	ts = append(ts, t)

	for _, lim := range []struct {
		c    int
		max  int64
		incl bool
	}{{128, 40 * mib, true}, {512, 64 * mib, false}} {
		rel := "≤"
		if !lim.incl {
			rel = "<"
		}
		t = target{goal: fmt.Sprintf("peak RSS at c=%d %s %d MiB", lim.c, rel, lim.max/mib)}
		if on != nil && on.hwm[lim.c] > 0 {
			h := max(on.hwm[lim.c], r.sampledRSS(on, lim.c))
			t.met = h < lim.max || (lim.incl && h == lim.max)
			t.figure = fmt.Sprintf("%s (the larger of VmHWM after c=%d and VmRSS sampled during it)", fmtMiB(h), lim.c)
		}
		ts = append(ts, t)
	}
	return ts
}

func (r *report) targets(w io.Writer) {
	fmt.Fprintf(w, "## Targets\n\n"+
		"The goals the plugin is built to meet: one call costs little more than the floor (what any plugin must cost, below); "+
		"under load, grouping calls makes one Vault serve several times more; an apiserver's start-up decrypts fast; "+
		"Status costs Vault nothing; memory stays small. "+
		"Each is checked on the plugin's default (group commit on) against the figures below.\n\n")
	for _, t := range r.checkTargets() {
		fmt.Fprintln(w, t)
	}
	fmt.Fprintln(w)
}
