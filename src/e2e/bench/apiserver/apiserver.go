// Package apiserver measures what the plugin costs a real kube-apiserver:
// Secret creates per second, and the time an apiserver takes from its
// start to serving a full LIST of 10,000 Secrets, side by side with no
// encryption (identity) and a local key, on etcd, kube-apiserver, Vault
// and the plugin from the test bed, all on 127.0.0.1.
package apiserver

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// Options say how much to measure.
type Options struct {
	PluginBin string        // the plugin as the bench built it; "" builds one as make build does
	Levels    []int         // concurrent creators (default 1, 16, 64)
	Window    time.Duration // measured window of each point (default 8s), split across its rounds
	Warmup    time.Duration // unmeasured start of each point (default 1s), split across its rounds
	Rounds    int           // windows each point is split into, the configurations taken in turn (default 4)
	Clients   int           // clientsets, each with its own connection (default 8)
	Secrets   int           // Secrets stored for the start-up measure (default 10,000)
	Slices    int           // KMS v2 DEKs they are written under (default 20)
	Repeats   int           // start-ups measured per configuration (default 2; the median is reported)
	Progress  io.Writer     // progress lines (nil: none)
}

func (o *Options) defaults() {
	if len(o.Levels) == 0 {
		o.Levels = []int{1, 16, 64}
	}
	for _, d := range []struct {
		v   *int
		def int
	}{{&o.Clients, 8}, {&o.Rounds, 4}, {&o.Secrets, 10000}, {&o.Slices, 20}, {&o.Repeats, 2}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if o.Window <= 0 {
		o.Window = 8 * time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Result is everything one run measured.
type Result struct {
	Options  Options
	Versions string // of kube-apiserver, etcd and Vault
	Points   []*point
	Costs    map[string]*cost // per provider, at the highest concurrency
	Startups []*startup
	DEKs     dekCount // of the KMS v2 start-up data, read from etcd
	Took     time.Duration
}

const (
	keyName    = "kube-secrets"
	policyName = "kms-bench"
	namespace  = "bench"
)

// bench is one run's state.
type bench struct {
	o       Options
	h       *harness.Program
	b       *bed.Bed
	dir     string
	pool    *pool
	provs   []provider
	plugins map[string]*plugin // by provider name
	res     *Result
	current string // the running apiserver's provider and etcd prefix
}

// Run starts the bed (Vault dev server, etcd, two plugins: group commit
// on and off) and measures every configuration. Processes stop when h's
// run ends. A bed failure ends h's run through h.Fatal.
func Run(ctx context.Context, h *harness.Program, o Options) (*Result, error) {
	o.defaults()
	start := time.Now()
	dir := h.TempDir()
	r := &bench{o: o, h: h, b: bed.New(h, dir), dir: dir, res: &Result{Options: o, Costs: map[string]*cost{}}}
	r.b.ReadyPoll = 20 * time.Millisecond
	r.b.PluginBin = o.PluginBin
	if r.b.PluginBin == "" {
		r.say("building the plugin")
		var err error
		if r.b.PluginBin, err = buildRelease(ctx, bed.RepoRoot(h), dir); err != nil {
			return nil, err
		}
	}
	r.say("starting Vault, etcd and the plugins (group commit on and off)")
	v := r.b.StartVault(testvault.Options{}, keyName, policyName)
	token := v.Token(&api.TokenCreateRequest{Policies: []string{policyName}, Period: "1h"})
	r.b.StartEtcd(h)
	on, err := r.startPlugin(ctx, token, true)
	if err != nil {
		return nil, err
	}
	off, err := r.startPlugin(ctx, token, false)
	if err != nil {
		return nil, err
	}
	if r.provs, err = providers(on.socket, on.socket, off.socket); err != nil {
		return nil, err
	}
	r.plugins = map[string]*plugin{provV2: on, provV1On: on, provV1Off: off}
	r.res.Versions = versions(ctx, r.b)
	if err := r.throughput(ctx); err != nil {
		return nil, err
	}
	if err := r.startups(ctx); err != nil {
		return nil, err
	}
	r.b.StopAPIServer()
	r.res.Took = time.Since(start)
	return r.res, nil
}

func (r *bench) say(format string, a ...any) {
	fmt.Fprintf(r.o.Progress, "apiserver bench: "+format+"\n", a...)
}

func (r *bench) provider(name string) provider {
	for _, p := range r.provs {
		if p.name == name {
			return p
		}
	}
	panic("no provider " + name)
}

// restart (re)starts the apiserver with p on the etcd prefix, each
// configuration's data kept apart from the others' so that no apiserver
// meets objects it has no key for. It returns the time to /readyz.
func (r *bench) restart(ctx context.Context, p provider, prefix string) (time.Duration, error) {
	if r.b.APIServer != nil && r.b.APIServer.Running() {
		r.b.StopAPIServer()
	}
	file := p.write(r.h, r.dir, "encryption-"+slug(p.name)+".yaml")
	ready := r.b.StartAPIServer(r.h, file, append([]string{"--etcd-prefix=" + prefix}, p.flags...)...)
	r.current = p.name + " " + prefix
	return ready, ctx.Err()
}

// slug is name made fit for a file name or etcd prefix.
func slug(name string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			return c
		case c >= 'A' && c <= 'Z':
			return c + 'a' - 'A'
		}
		return '-'
	}, name)
}
