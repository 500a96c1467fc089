// Command bench measures vault-kms-plugin side by side with Vault
// transit itself, on one machine, in one run, and writes BENCHMARKS.md.
//
// It starts a Vault dev server from the test bed (bin/vault, through
// src/internal/testvault) that listens on plain HTTP and on TLS, builds the
// plugin once and starts it four times (group commit on and off, over each
// transport), and measures, over both transports, direct transit calls,
// the plugin's KMS v2 and v1 APIs at several concurrencies, a decrypt
// storm, the Vault cost of Status, and the plugin's memory and CPU; and a
// bare gRPC hop. All traffic stays on 127.0.0.1.
//
//	cd src/e2e && go run ./bench -out ../../BENCHMARKS.md   (what `make bench` runs)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/bench/apiserver"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
)

type options struct {
	only         string // "apiserver": the kube-apiserver section alone
	apiserver    apiserver.Options
	out          string
	levels       []int
	dur          time.Duration // measured window of each point
	count        int           // if > 0, calls per point instead of dur
	warmup       time.Duration
	timeout      time.Duration // per call
	storm        int
	stormWorkers int
	status       int
	pool         int      // distinct inputs cycled through by each path
	rounds       int      // windows a point's measurement is split into
	pluginEnv    []string // extra KEY=VALUE for both plugin processes
	pprof        bool     // serve net/http/pprof from the plugins and forwarders
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// The bench runs its reference servers as child processes of itself.
	if serve, ok := map[string]func(string) error{"-serve-hop": serveHop, "-serve-forward": serveForward}[first(args)]; ok && len(args) == 2 {
		if err := serve(args[1]); err != nil {
			fmt.Fprintf(stderr, "bench %s: %v\n", args[0], err)
			return 1
		}
		return 0
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h := &harness.Program{Stderr: stderr, TempPrefix: "kms-bench-"}
	if err := h.Run(func() error { return benchmark(ctx, o, h, stdout) }); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	levels := fs.String("c", "1,16,128,512", "concurrency levels, comma-separated")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "markdown report to write")
	fs.DurationVar(&o.dur, "d", 4*time.Second, "measured duration of each point")
	fs.IntVar(&o.count, "n", 0, "measured calls per point (overrides -d when > 0)")
	fs.IntVar(&o.rounds, "rounds", 4, "rounds each level's measurement is split into, taking the paths in turn")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up of each point, split across its rounds")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of each call")
	fs.IntVar(&o.storm, "storm", 10000, "distinct v1 ciphertexts in the decrypt storm")
	fs.IntVar(&o.stormWorkers, "storm-workers", 256, "concurrent callers of the decrypt storm")
	fs.IntVar(&o.status, "status", 1000, "Status calls whose Vault requests are counted")
	fs.IntVar(&o.pool, "pool", 1024, "distinct plaintexts and ciphertexts each path cycles through")
	fs.BoolVar(&o.pprof, "pprof", false, "build the plugin with net/http/pprof and serve it, and the forwarders', on 127.0.0.1 ports printed at start, to profile them under load")
	fs.Func("plugin-env", "extra `KEY=VALUE` in the plugins' environment, e.g. GOMAXPROCS=1 (repeatable; shown in the report)", func(kv string) error {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("%q is not KEY=VALUE", kv)
		}
		o.pluginEnv = append(o.pluginEnv, kv)
		return nil
	})
	fs.StringVar(&o.only, "only", "", "`apiserver`: run only the kube-apiserver section and write it to -out")
	apiserverFlags(fs, &o.apiserver)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) error {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return err
	}
	if fs.NArg() > 0 {
		return nil, bad("unexpected arguments %q", fs.Args())
	}
	for f := range strings.SplitSeq(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, bad("-c: %q is not a positive concurrency", f)
		}
		o.levels = append(o.levels, n)
	}
	switch {
	case o.dur <= 0 && o.count <= 0:
		return nil, bad("-d or -n must be positive")
	case o.timeout <= 0:
		return nil, bad("-timeout must be positive")
	case o.only != "" && o.only != "apiserver":
		return nil, bad("-only %q: the only section that runs alone is apiserver (-only apiserver)", o.only)
	case checkAPIServerFlags(o.apiserver) != nil:
		return nil, bad("%w", checkAPIServerFlags(o.apiserver))
	case o.storm < 1 || o.stormWorkers < 1 || o.status < 1 || o.pool < 1 || o.rounds < 1:
		return nil, bad("-storm, -storm-workers, -status, -pool and -rounds must be positive")
	}
	return o, nil
}
