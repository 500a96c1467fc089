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
	miss   string // by how much it was missed, when not met
}

func (t target) String() string {
	mark := "NOT met"
	if t.met {
		mark = "met"
	}
	if t.figure == "" {
		mark, t.figure = "not measured", "this run did not measure it"
	}
	s := fmt.Sprintf("- **%s**: %s: %s", mark, t.goal, t.figure)
	if !t.met && t.miss != "" {
		s += "; missed by " + t.miss
	}
	return s
}

// atMost sets t's verdict on ratio x against the most it may be.
func (t *target) atMost(x, limit float64) {
	t.met = x <= limit
	if !t.met {
		t.miss = fmt.Sprintf("%.2f× (%.0f%% over)", x-limit, (x/limit-1)*100)
	}
}

// atLeast sets t's verdict on ratio x against the least it may be.
func (t *target) atLeast(x, limit float64) {
	t.met = x >= limit
	if !t.met {
		t.miss = fmt.Sprintf("%.2f× (%.0f%% short)", limit-x, (1-x/limit)*100)
	}
}

// floorTarget is v2 Encrypt's p50 at c=1 over via against the floor.
func (r *report) floorTarget(via string) target {
	t := target{goal: fmt.Sprintf("over %s, v2 Encrypt p50 at c=1 within 1.10× of the floor (direct encrypt p50 + bare hop p50)", via)}
	if p, floor := r.find(pathID{apiV2, "encrypt", "on", via}, 1), r.floorAt1("encrypt", via); p != nil && floor > 0 {
		x := float64(p.res.pct(0.5)) / float64(floor)
		t.atMost(x, 1.10)
		t.figure = fmt.Sprintf("%s = %.2f× the floor of %s", fmtDur(p.res.pct(0.5)), x, fmtDur(floor))
		if f := r.find(pathID{apiFwd, "encrypt", "", via}, 1); f != nil {
			t.figure += fmt.Sprintf(" (the minimal forwarder: %.2f×)", float64(f.res.pct(0.5))/float64(floor))
		}
	}
	return t
}

// throughputTarget is v1 Encrypt's throughput at c=128 over via, group
// commit on, against base.
func (r *report) throughputTarget(via string, base pathID, name string) target {
	t := target{goal: fmt.Sprintf("over %s, v1 Encrypt throughput at c=128 ≥ 3× %s", via, name)}
	if p, b := r.find(pathID{apiV1, "encrypt", "on", via}, 128), r.find(base, 128); p != nil && b != nil {
		x := p.res.rate() / b.res.rate()
		t.atLeast(x, 3)
		t.figure = fmt.Sprintf("%.0f ops/s = %.2f× %s (%.0f ops/s)", p.res.rate(), x, name, b.res.rate())
	}
	return t
}

// checkTargets evaluates the targets on the plugin's default, group
// commit on: all over plain HTTP, and the floor and throughput over TLS.
func (r *report) checkTargets() []target {
	ts := []target{
		r.floorTarget(viaHTTP),
		r.throughputTarget(viaHTTP, pathID{apiDirect, "encrypt", "", viaHTTP}, "direct transit encrypt"),
		r.throughputTarget(viaHTTP, pathID{apiV1, "encrypt", "off", viaHTTP}, "group commit off"),
	}

	on, off := r.plugin("on", viaHTTP), r.plugin("off", viaHTTP)
	t := target{goal: fmt.Sprintf("over HTTP, decrypt storm of %d ≥ 3× faster with group commit", r.o.storm)}
	if on != nil && off != nil {
		x := off.storm.elapsed.Seconds() / on.storm.elapsed.Seconds()
		t.atLeast(x, 3)
		t.figure = fmt.Sprintf("%s on vs %s off = %.2f×", fmtDur(on.storm.elapsed), fmtDur(off.storm.elapsed), x)
	}
	ts = append(ts, t)

	t = target{goal: "over HTTP, 0 Vault requests per 1,000 Status"}
	if on != nil {
		t.met, t.figure = on.statusCost.vaultReqs == 0, fmt.Sprintf("%.1f per 1,000 (%d requests for %d calls)",
			r.statusPer1000(on), on.statusCost.vaultReqs, r.o.status)
		t.miss = fmt.Sprintf("%d requests", on.statusCost.vaultReqs)
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
		t = target{goal: fmt.Sprintf("over HTTP, peak RSS at c=%d %s %d MiB", lim.c, rel, lim.max/mib)}
		if on != nil && on.hwm[lim.c] > 0 {
			h := max(on.hwm[lim.c], r.sampledRSS(on, lim.c))
			t.met = h < lim.max || (lim.incl && h == lim.max)
			t.figure = fmt.Sprintf("%s (the larger of VmHWM after c=%d and VmRSS sampled during it)", fmtMiB(h), lim.c)
			t.miss = fmtMiB(h - lim.max)
		}
		ts = append(ts, t)
	}
	return append(ts,
		r.floorTarget(viaTLS),
		r.throughputTarget(viaTLS, pathID{apiDirect, "encrypt", "", viaTLS}, "direct transit encrypt"))
}

func (r *report) targets(w io.Writer) {
	fmt.Fprintf(w, "## Targets\n\n"+
		"The goals the plugin is built to meet: one call costs little more than the floor (what any plugin must cost, below); "+
		"under load, grouping calls makes one Vault serve several times more; an apiserver's start-up decrypts fast; "+
		"Status costs Vault nothing; memory stays small. "+
		"Each is checked on the plugin's default (group commit on) against the figures below: all over plain HTTP, "+
		"and the floor and the throughput over TLS too.\n\n")
	for _, t := range r.checkTargets() {
		fmt.Fprintln(w, t)
	}
	fmt.Fprintln(w)
}
