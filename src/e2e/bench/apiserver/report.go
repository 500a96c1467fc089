package apiserver

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// fmtDur shows d with three significant figures or so.
func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d <= 0:
		return "—"
	case ms < 1:
		return fmt.Sprintf("%.0f µs", ms*1000)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	case ms < 10000:
		return fmt.Sprintf("%.2f s", ms/1000)
	}
	return fmt.Sprintf("%.1f s", ms/1000)
}

// row writes one markdown table row; a header row gets its rule.
func row(w io.Writer, cells ...string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

func header(w io.Writer, cells ...string) {
	row(w, cells...)
	rule := slices.Repeat([]string{"--:"}, len(cells))
	rule[0] = "---"
	row(w, rule...)
}

// cpuOrder is the order of the processes in the CPU columns.
var cpuOrder = []string{"kube-apiserver", "etcd", "plugin", "Vault", "load generator"}

// Markdown writes the report's section.
func (r *Result) Markdown(w io.Writer) {
	o := r.Options
	top := o.Levels[len(o.Levels)-1]
	fmt.Fprintf(w, "## What it costs your apiserver\n\n"+
		"`make bench-apiserver`: a real kube-apiserver on etcd, its Secrets encrypted in turn with each configuration below, "+
		"Vault's dev server and the plugin as `make build` builds it (group commit on and off), all on 127.0.0.1 "+
		"(%s). The load generator is %d clientsets, each on its own connection, client-side rate limits off, speaking protobuf, "+
		"creating Secrets of about 300 bytes with unique names. Its user is in system:masters, whose requests API Priority and "+
		"Fairness exempts, so the apiserver's max-in-flight limits do not cap these figures (the rejected column below counts any refusal). "+
		"Each configuration has an etcd prefix of its own. This section took %s.\n\n",
		r.Versions, o.Clients, r.Took.Round(time.Second))

	fmt.Fprintf(w, "### Secret creates per second\n\n"+
		"Creates that succeeded in a %s window per point (after %s of warm-up), split into %d rounds that take the "+
		"configurations in turn, each on its own kube-apiserver (all started before the first point and running throughout, on one etcd), "+
		"and their latency.\n\n", o.Window, o.Warmup, o.Rounds)
	header(w, "configuration", "concurrency", "creates/s", "÷ identity", "p50", "p99", "errors")
	for _, p := range r.Points {
		ratio := "—"
		if id := r.point(provIdentity, p.c); id != nil && id.rate() > 0 {
			ratio = fmt.Sprintf("%.2f×", p.rate()/id.rate())
		}
		errs := fmt.Sprint(p.errs)
		if p.firstErr != nil {
			errs += fmt.Sprintf(" (first: %v)", p.firstErr)
		}
		row(w, p.provider, fmt.Sprint(p.c), fmt.Sprintf("%.0f", p.rate()), ratio, fmtDur(p.pct(0.5)), fmtDur(p.pct(0.99)), errs)
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "Where a create's time went at c=%d, from the apiserver's and the plugin's /metrics before and after the point, "+
		"and each process's CPU (/proc) divided by the creates (warm-up included):\n\n", top)
	cpuHead := make([]string, len(cpuOrder))
	for i, n := range cpuOrder {
		cpuHead[i] = "CPU " + n
	}
	header(w, append([]string{"configuration", "POST mean", "encryption mean", "decryptions per create", "decryption mean", "etcd create mean", "plugin calls per create",
		"plugin call mean", "Vault requests per plugin call", "rejected"}, cpuHead...)...)
	for _, p := range r.provNames() {
		c := r.Costs[p]
		if c == nil || c.creates == 0 {
			continue
		}
		cells := []string{p, fmtDur(c.post.mean()), fmtDur(c.toStorage.mean()),
			perCall(c.fromStorage.count, float64(c.creates)), fmtDur(c.fromStorage.mean()), fmtDur(c.etcdCreate.mean()),
			perCall(c.pluginCalls, float64(c.creates)), fmtDur(c.pluginLat.mean()), perCall(c.vaultReqs, c.pluginCalls), fmt.Sprint(c.rejected)}
		for _, n := range cpuOrder {
			if t, ok := c.cpu[n]; ok {
				cells = append(cells, fmtDur(t/time.Duration(c.creates)))
			} else {
				cells = append(cells, "—")
			}
		}
		row(w, cells...)
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "kube-apiserver's transformation metric counts each secretbox read and write twice: the provider's prefix "+
		"transformer and its keys' own, nested inside it, each record one (`server/options/encryptionconfig/config.go`, "+
		"`storage/value/transformer.go`), so its per-create counts read 2 and its means are per record.\n\n")
	r.startupMarkdown(w)

	fmt.Fprintf(w, "### Targets\n\nRatios of this run's figures; one machine, one run.\n\n")
	for _, t := range r.Targets() {
		fmt.Fprintln(w, t)
	}
	fmt.Fprintln(w)
	r.whereTimeGoes(w)
}

func (r *Result) startupMarkdown(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "### Start-up with %d Secrets\n\n"+
		"From the kube-apiserver process's start until a LIST of all Secrets (all namespaces, no resourceVersion: a consistent read, "+
		"which kube-apiserver serves from its watch cache once that is filled, answering 429 until then) returns all %d; "+
		"polled every 20 ms without client retries. Median of %d starts per configuration, the configurations taken in turn. "+
		"The Secrets were stored through the same configuration; KMS v1 with group commit on and off read the same data. "+
		"The KMS v2 data was written in %d slices, the Vault key rotated and the apiserver restarted between slices: etcd holds "+
		"%d objects under %d distinct encrypted DEK seeds and %d key_ids.\n\n",
		o.Secrets, o.Secrets, o.Repeats, o.Slices, r.DEKs.objects, r.DEKs.deks, r.DEKs.keyIDs)
	header(w, "configuration", "to LIST (median)", "all runs", "to /readyz", "watch cache init", "decrypts", "decrypt mean",
		"decrypt time ÷ cache init", "KMS calls", "plugin calls", "Vault requests", "CPU apiserver", "CPU plugin", "CPU Vault")
	for _, s := range r.Startups {
		m := s.median()
		var all []string
		for _, run := range s.runs {
			all = append(all, fmtDur(run.total))
		}
		conc := "—"
		if m.cacheInit > 0 {
			conc = fmt.Sprintf("%.2f", m.decrypts.sum/m.cacheInit.Seconds())
		}
		row(w, s.provider, fmtDur(m.total), strings.Join(all, ", "), fmtDur(m.ready), fmtDur(m.cacheInit),
			fmt.Sprintf("%.0f", m.decrypts.count), fmtDur(m.decrypts.mean()), conc,
			fmt.Sprintf("%.0f", m.kms.count), fmt.Sprintf("%.0f", m.pluginCalls), fmt.Sprintf("%.0f", m.vaultReqs),
			fmtDur(m.apiCPU), fmtDur(m.pluginCPU), fmtDur(m.vaultCPU))
	}
	fmt.Fprintf(w, "\n\"decrypt time ÷ cache init\" is the summed time of the apiserver's from-storage transformations over the "+
		"watch cache's fill: about 1 means one object decrypted at a time.\n\n")
}

// provNames are the providers in the order measured.
func (r *Result) provNames() []string {
	var names []string
	for _, p := range r.Points {
		if !slices.Contains(names, p.provider) {
			names = append(names, p.provider)
		}
	}
	return names
}

func perCall(reqs, calls float64) string {
	if calls == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", reqs/calls)
}
