package apiserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
)

// cost is where a point's time went, from the apiserver's and the
// plugin's own metrics and the processes' CPU, taken around each of its
// windows and added up.
type cost struct {
	creates     int  // that succeeded, warm-up included: what CPU is divided by
	post        stat // apiserver_request_duration_seconds of POST secrets
	toStorage   stat // transformations (encryptions) of a Secret
	fromStorage stat // and decryptions: the watch reads each created Secret back
	etcdCreate  stat
	pluginLat   stat // the plugin's own gRPC latency
	pluginCalls float64
	vaultReqs   float64 // the plugin's HTTP requests to Vault
	rejected    float64 // requests the apiserver's flow control rejected
	cpu         map[string]time.Duration
}

// server is one configuration's kube-apiserver during the throughput
// measure, with its own clients.
type server struct {
	prov provider
	b    *bed.Bed
	pool *pool
	pt   *point // of the level being measured
	cost *cost
}

type snapshot struct {
	api, plugin metrics
	cpu         map[string]time.Duration
}

// snap reads the metrics and CPU that a window's cost is the difference
// of.
func (r *bench) snap(s *server) (*snapshot, error) {
	pl := r.plugins[s.prov.name]
	sn := &snapshot{cpu: map[string]time.Duration{
		"kube-apiserver": cpuTime(s.b.APIServer.PID()),
		"etcd":           cpuTime(r.b.Etcd.PID()),
		"Vault":          cpuTime(r.b.Vault.PID()),
		"load generator": cpuTime(os.Getpid()),
	}}
	var err error
	if sn.api, err = parseMetrics(s.b.APIGet("/metrics")); err != nil {
		return nil, fmt.Errorf("kube-apiserver (%s): %w", s.prov.name, err)
	}
	if pl != nil {
		sn.cpu["plugin"] = cpuTime(pl.proc.PID())
		if sn.plugin, err = pl.metrics(); err != nil {
			return nil, fmt.Errorf("plugin: %w", err)
		}
	}
	return sn, nil
}

func (c *cost) add(before, after *snapshot, creates int) {
	sum := func(into *stat, s stat) { into.count += s.count; into.sum += s.sum }
	c.creates += creates
	sum(&c.post, delta(before.api, after.api, "apiserver_request_duration_seconds", map[string]string{"verb": "POST", "resource": "secrets"}))
	sum(&c.toStorage, delta(before.api, after.api, "apiserver_storage_transformation_duration_seconds", map[string]string{"transformation_type": "to_storage"}))
	sum(&c.fromStorage, delta(before.api, after.api, "apiserver_storage_transformation_duration_seconds", map[string]string{"transformation_type": "from_storage"}))
	sum(&c.etcdCreate, delta(before.api, after.api, "etcd_request_duration_seconds", map[string]string{"operation": "create", "resource": "secrets"}))
	c.rejected += delta(before.api, after.api, "apiserver_flowcontrol_rejected_requests_total", nil).sum
	if after.plugin != nil {
		sum(&c.pluginLat, delta(before.plugin, after.plugin, "vault_kms_plugin_grpc_request_duration_seconds", nil))
		c.pluginCalls += delta(before.plugin, after.plugin, "vault_kms_plugin_grpc_requests_total", nil).sum
		c.vaultReqs += delta(before.plugin, after.plugin, "vault_kms_plugin_vault_requests_total", nil).sum
	}
	for name, t := range after.cpu {
		c.cpu[name] += t - before.cpu[name]
	}
}

// turn is which of n configurations is measured i-th in a round. The
// order rotates from round to round, so that a drift of the machine weighs
// on all of them alike, and runs backwards every other round, so that no
// configuration always follows the same one: what a window leaves behind
// (its apiserver's garbage collection, etcd's write-back) lands on the
// next. With a forward rotation only, KMS v1 with group commit on, always
// measured right after KMS v2, came out about 6% slower at c=1 than with it
// off; swapping the two in the list moved that gap to within noise, and
// the load generator's own CPU per create was 5% higher in those windows.
func turn(i, round, n int) int {
	if round%2 == 1 {
		return ((round-i)%n + n) % n
	}
	return (i + round) % n
}

// throughput starts one apiserver per configuration, all on the bed's
// etcd, each on an etcd prefix of its own, and measures Secret creates at
// each concurrency. Each point's window is split into rounds that take
// the configurations in turn (see turn). The extra apiservers stop at the
// end.
func (r *bench) throughput(ctx context.Context) error {
	var servers []*server
	for i, p := range r.provs {
		b := r.b
		if i > 0 {
			b = bed.New(r.h, filepath.Join(r.dir, "apiserver-"+slug(p.name)))
			b.Etcd, b.EtcdPort = r.b.Etcd, r.b.EtcdPort
		}
		r.say("%s: starting its kube-apiserver", p.name)
		b.StartAPIServer(r.h, p.write(r.h, r.dir, "encryption-"+slug(p.name)+".yaml"),
			append([]string{"--etcd-prefix=/bench-" + slug(p.name)}, p.flags...)...)
		pl, err := newPool(b.Kubeconfig, r.o.Clients)
		if err != nil {
			return err
		}
		if err := pl.ensureNamespaces(ctx, namespace); err != nil {
			return err
		}
		servers = append(servers, &server{prov: p, b: b, pool: pl})
	}
	window := r.o.Window / time.Duration(r.o.Rounds)
	warmup := r.o.Warmup / time.Duration(r.o.Rounds)
	top := r.o.Levels[len(r.o.Levels)-1]
	for _, c := range r.o.Levels {
		r.say("Secret creates at c=%d: %d rounds of %s per configuration", c, r.o.Rounds, window)
		for _, s := range servers {
			s.pt, s.cost = &point{provider: s.prov.name, c: c}, &cost{cpu: map[string]time.Duration{}}
		}
		for round := range r.o.Rounds {
			for i := range servers {
				s := servers[turn(i, round, len(servers))]
				before, err := r.snap(s)
				if err != nil {
					return err
				}
				pt := s.pool.measure(ctx, s.prov.name, namespace, fmt.Sprintf("r%d", round), c, warmup, window)
				after, err := r.snap(s)
				if err != nil {
					return err
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				s.pt.merge(pt)
				s.cost.add(before, after, pt.all)
			}
		}
		for _, s := range servers {
			slices.Sort(s.pt.lat)
			r.res.Points = append(r.res.Points, s.pt)
			if c == top {
				r.res.Costs[s.prov.name] = s.cost
			}
			r.say("  %s: %.0f creates/s, p50 %s, p99 %s, %d errors", s.prov.name, s.pt.rate(), fmtDur(s.pt.pct(0.5)), fmtDur(s.pt.pct(0.99)), s.pt.errs)
		}
	}
	for _, s := range servers[1:] {
		s.b.StopAPIServer()
	}
	// The bed's own apiserver runs on; the start-ups restart it.
	r.current = servers[0].prov.name + " /bench-" + slug(servers[0].prov.name)
	r.pool = servers[0].pool
	return nil
}
