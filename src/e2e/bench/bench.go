package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// pathID names a measured path.
type pathID struct {
	api   string // apiDirect, apiHop, apiFwd, apiV2 or apiV1
	kind  string // "encrypt" or "decrypt"
	group string // "on" or "off" for the plugin, "" otherwise
	via   string // viaHTTP or viaTLS: how Vault is reached; "" for the bare hop
}

const (
	apiDirect = "direct"
	apiHop    = "hop"
	apiFwd    = "forward"
	apiV2     = "v2"
	apiV1     = "v1"
)

// path is a measured path: open gives its call at a concurrency and what
// to release afterwards.
type path struct {
	id   pathID
	proc *procs.Process // the plugin or forwarder whose CPU and memory count; nil for none
	open func(c int) (call, func(), error)
}

// cost is what a measurement window cost besides time.
type cost struct {
	vaultReqs int64         // requests in Vault's audit log
	vaultCPU  time.Duration // Vault's CPU time
	pluginCPU time.Duration // the plugin's (or forwarder's) CPU time (0 without one)
	maxRSS    int64         // its largest sampled VmRSS
}

// point is one path measured at one concurrency.
type point struct {
	id  pathID
	c   int
	res result
	cost
}

// pluginRun is what is measured about one plugin process.
type pluginRun struct {
	p          *plugin
	hwm        map[int]int64 // VmHWM after each concurrency level
	storm      result
	stormCost  cost
	status     result
	statusCost cost
	cpu        time.Duration // over the whole process
	peak       int64         // VmHWM over the whole process
}

// bench holds what the measurements share.
type bench struct {
	o       *options
	h       *harness.Program
	v       *vaultServer
	out     io.Writer
	pts     [][]byte            // random 32-byte DEKs
	pools   map[pathID][]sealed // ciphertexts of pts for each decrypt path
	paths   []path
	points  []point
	plugins []*pluginRun
}

// round is one of a point's o.rounds measuring windows.
func (b *bench) round(workers int) load {
	return load{workers: workers, dur: b.o.dur / time.Duration(b.o.rounds),
		count: (b.o.count + b.o.rounds - 1) / b.o.rounds, timeout: b.o.timeout}
}

// forwarderRun is the minimal forwarder to Vault over via.
type forwarderRun struct {
	via  string
	c    codec
	proc *procs.Process
}

// prepare makes the inputs: plaintexts, and ciphertexts for every decrypt
// path made by that path's own encrypt.
func (b *bench) prepare(ctx context.Context, hop codec, fwds []forwarderRun) error {
	b.pts = make([][]byte, b.o.pool)
	for i := range b.pts {
		b.pts[i] = make([]byte, 32)
		_, _ = rand.Read(b.pts[i])
	}
	b.pools = map[pathID][]sealed{}
	seal := func(id pathID, c codec) error {
		pool, err := sealPool(ctx, c, b.pts, b.o.pool, 32, b.o.timeout)
		b.pools[id] = pool
		return err
	}
	for _, via := range transports {
		dc, release, err := b.directCodec(via)(32)
		if err != nil {
			return err
		}
		defer release()
		if err := seal(pathID{apiDirect, "decrypt", "", via}, dc); err != nil {
			return fmt.Errorf("direct transit over %s: %w", via, err)
		}
		b.addPath(pathID{apiDirect, "encrypt", "", via}, nil, b.directCodec(via))
		b.addPath(pathID{apiDirect, "decrypt", "", via}, nil, b.directCodec(via))
	}
	b.addPath(pathID{apiHop, "encrypt", "", ""}, nil, fixed(hop))
	for _, f := range fwds {
		b.addPath(pathID{apiFwd, "encrypt", "", f.via}, f.proc, fixed(f.c))
	}
	for _, pr := range b.plugins {
		p := pr.p
		for _, x := range []struct {
			api string
			c   codec
		}{{apiV2, kmsV2{p.v2}}, {apiV1, kmsV1{p.v1}}} {
			if err := seal(pathID{x.api, "decrypt", p.group(), p.via}, x.c); err != nil {
				return fmt.Errorf("%s %s: %w", p.label(), x.api, err)
			}
			b.addPath(pathID{x.api, "encrypt", p.group(), p.via}, p.proc, fixed(x.c))
			b.addPath(pathID{x.api, "decrypt", p.group(), p.via}, p.proc, fixed(x.c))
		}
	}
	return b.v.audit.reset()
}

// directCodec gives vault/api clients of Vault over via, with a pool of
// as many connections as callers.
func (b *bench) directCodec(via string) func(c int) (codec, func(), error) {
	return func(c int) (codec, func(), error) {
		cl, err := b.v.client(via, c, b.o.timeout)
		if err != nil {
			return nil, nil, err
		}
		return direct{cl}, func() { cl.CloneConfig().HttpClient.CloseIdleConnections() }, nil
	}
}

// fixed is a codec that does not depend on the concurrency.
func fixed(c codec) func(int) (codec, func(), error) {
	return func(int) (codec, func(), error) { return c, func() {}, nil }
}

func (b *bench) addPath(id pathID, p *procs.Process, newCodec func(int) (codec, func(), error)) {
	b.paths = append(b.paths, path{id: id, proc: p, open: func(c int) (call, func(), error) {
		cd, release, err := newCodec(c)
		if err != nil {
			return nil, nil, err
		}
		if id.kind == "encrypt" {
			return encryptCall(cd, b.pts), release, nil
		}
		return decryptCall(cd, b.pools[id]), release, nil
	}})
}

// measure runs l with f and records what the window cost, p's CPU and
// memory included when p is not nil. With quiet > 0 it first and last
// waits until Vault's audit log has been still that long.
func (b *bench) measure(ctx context.Context, p *procs.Process, l load, f call, quiet time.Duration) (result, cost, error) {
	var c cost
	settle := func() error {
		if quiet > 0 {
			_, err := b.v.audit.settle(ctx, quiet, 30*time.Second)
			return err
		}
		return nil
	}
	if err := settle(); err != nil {
		return result{}, c, err
	}
	a0, err := b.v.audit.requests()
	if err != nil {
		return result{}, c, err
	}
	v0, _ := procCPU(b.v.PID())
	var p0 time.Duration
	stopRSS := func() int64 { return 0 }
	if p != nil {
		p0, _ = procCPU(p.PID())
		stopRSS = sampleRSS(p.PID(), 50*time.Millisecond)
	}
	res, err := l.run(ctx, f)
	c.maxRSS = stopRSS()
	if err != nil {
		return res, c, err
	}
	if err := settle(); err != nil {
		return res, c, err
	}
	a1, err := b.v.audit.requests()
	if err != nil {
		return res, c, err
	}
	v1, _ := procCPU(b.v.PID())
	c.vaultReqs, c.vaultCPU = a1-a0, v1-v0
	if p != nil {
		p1, err := procCPU(p.PID())
		if err != nil {
			return res, c, fmt.Errorf("%s: %w\n%s", p.Name, err, harness.Output(p))
		}
		c.pluginCPU = p1 - p0
	}
	return res, c, b.v.audit.reset()
}

// level measures every path at concurrency c, then notes each plugin's
// peak RSS so far (levels run in the order given, lowest first by default).
// Each point is measured in o.rounds windows that take the paths in turn,
// so that a drift of the machine or of Vault (its heap, its audit log)
// weighs on every path alike instead of on whichever came last.
func (b *bench) level(ctx context.Context, c int) error {
	calls := make([]call, len(b.paths))
	for i, pa := range b.paths {
		f, release, err := pa.open(c)
		if err != nil {
			return err
		}
		defer release()
		calls[i] = f
	}
	// Each window follows its own warm-up, so that it does not inherit
	// what the path before it left behind (Vault busy with a backlog, or
	// idle and cold).
	warm := load{workers: c, dur: b.o.warmup / time.Duration(b.o.rounds), timeout: b.o.timeout}
	pts := make([]point, len(b.paths))
	for r := range b.o.rounds {
		for i, pa := range b.paths {
			if warm.dur > 0 {
				if _, err := warm.run(ctx, calls[i]); err != nil {
					return fmt.Errorf("%s at c=%d: %w", pathName(pa.id), c, err)
				}
			}
			res, cost, err := b.measure(ctx, pa.proc, b.round(c), calls[i], 0)
			if err != nil {
				return fmt.Errorf("%s at c=%d: %w", pathName(pa.id), c, err)
			}
			if r == 0 {
				pts[i] = point{id: pa.id, c: c}
			}
			pts[i].add(res, cost)
		}
	}
	for _, pt := range pts {
		pt.res.finish()
		b.points = append(b.points, pt)
		fmt.Fprintf(b.out, "c=%-4d %-42s p50 %9s  p99 %9s  %8.0f ops/s  %5.2f Vault req/op%s\n",
			c, pathName(pt.id), fmtDur(pt.res.pct(0.5)), fmtDur(pt.res.pct(0.99)), pt.res.rate(),
			perOp(pt.vaultReqs, pt.res), errNote(pt.res))
	}
	for _, pr := range b.plugins {
		_, hwm, err := pr.p.usage()
		if err != nil {
			return err
		}
		pr.hwm[c] = hwm
	}
	return nil
}

// add merges one round into the point; res.finish counts and sorts once
// all rounds are in.
func (p *point) add(r result, c cost) {
	p.res.errs += r.errs
	if p.res.firstErr == nil {
		p.res.firstErr = r.firstErr
	}
	p.res.elapsed += r.elapsed
	p.res.lat = append(p.res.lat, r.lat...)
	p.vaultReqs += c.vaultReqs
	p.vaultCPU += c.vaultCPU
	p.pluginCPU += c.pluginCPU
	p.maxRSS = max(p.maxRSS, c.maxRSS)
}

// storm decrypts o.storm distinct v1 ciphertexts, made beforehand through
// the same plugin, with o.stormWorkers callers: an apiserver starting up.
func (b *bench) storm(ctx context.Context, pr *pluginRun) error {
	c := kmsV1{pr.p.v1}
	pool, err := sealPool(ctx, c, b.pts, b.o.storm, 64, b.o.timeout)
	if err != nil {
		return fmt.Errorf("storm ciphertexts (%s): %w", pr.p.label(), err)
	}
	if err := b.v.audit.reset(); err != nil {
		return err
	}
	l := load{workers: b.o.stormWorkers, count: b.o.storm, timeout: b.o.timeout}
	pr.storm, pr.stormCost, err = b.measure(ctx, pr.p.proc, l, decryptCall(c, pool), 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "decrypt storm (%s): %d decrypts by %d callers in %s, %d Vault requests%s\n",
		pr.p.label(), b.o.storm, b.o.stormWorkers, fmtDur(pr.storm.elapsed), pr.stormCost.vaultReqs, errNote(pr.storm))
	return nil
}

// statusCost counts the Vault requests o.status Status calls cause once
// the plugin is idle.
func (b *bench) statusCost(ctx context.Context, pr *pluginRun) error {
	var err error
	l := load{workers: 1, count: b.o.status, timeout: b.o.timeout}
	pr.status, pr.statusCost, err = b.measure(ctx, pr.p.proc, l, pr.p.status, time.Second)
	if err != nil {
		return err
	}
	if pr.status.errs > 0 {
		return fmt.Errorf("status calls (%s): %d failed, first: %w", pr.p.label(), pr.status.errs, pr.status.firstErr)
	}
	fmt.Fprintf(b.out, "Status (%s): %d calls, %d Vault requests\n", pr.p.label(), b.o.status, pr.statusCost.vaultReqs)
	return nil
}

// protocols is the HTTP protocol the direct client negotiates with Vault
// over each transport. Over TLS it must be HTTP/2, as production clients
// of Vault (vault/api, the plugin) use there, or the TLS figures would
// measure another protocol than production's.
func (b *bench) protocols(ctx context.Context) (map[string]string, error) {
	got := map[string]string{}
	for _, via := range transports {
		c, err := b.v.client(via, 1, b.o.timeout)
		if err != nil {
			return nil, err
		}
		proto, err := protocol(ctx, c)
		c.CloneConfig().HttpClient.CloseIdleConnections()
		if err != nil {
			return nil, err
		}
		if via == viaTLS && proto != "HTTP/2.0" {
			return nil, fmt.Errorf("the direct client negotiated %s with Vault over TLS, want HTTP/2.0 as vault/api uses", proto)
		}
		fmt.Fprintf(b.out, "direct client to Vault over %s: %s\n", via, proto)
		got[via] = proto
	}
	return got, nil
}

// pprofAddrEnv is where a plugin built for the bench with -pprof, or a
// forwarder, serves net/http/pprof.
const pprofAddrEnv = "BENCH_PPROF_ADDR"

// pprofEnv gives the process named name a port for net/http/pprof when
// the run profiles, and prints where.
func (b *bench) pprofEnv(name string) []string {
	if !b.o.pprof {
		return nil
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testvault.FreePort(b.h))
	fmt.Fprintf(b.out, "pprof of the %s: go tool pprof -top http://%s/debug/pprof/profile?seconds=10\n", name, addr)
	return []string{pprofAddrEnv + "=" + addr}
}
