package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// benchmark runs everything and writes the report.
func benchmark(ctx context.Context, o *options, h *harness.Program, out io.Writer) error {
	start := time.Now()
	root, err := procs.RepoRoot()
	if err != nil {
		return err
	}
	if o.only == "apiserver" {
		return apiserverOnly(ctx, o, h, out)
	}
	vbin := testvault.Bin(h)
	tmp := h.TempDir()
	r := &report{o: o, start: start.UTC(), machine: describeMachine()}
	if r.vault, err = vaultVersion(ctx, vbin); err != nil {
		return err
	}
	fmt.Fprintln(out, "building the plugin")
	pbin, err := buildPlugin(ctx, root, o.pprof)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "starting %s\n", r.vault)
	v := startVault(h, filepath.Join(tmp, "pki"))
	b := &bench{o: o, h: h, v: v, out: out}
	if r.protocols, err = b.protocols(ctx); err != nil {
		return err
	}
	// The reference servers run with the plugins' extra environment, so
	// that all run under the same Go runtime settings.
	_, hop, err := startServer(ctx, h, "hop", "hop", tmp, append(os.Environ(), o.pluginEnv...))
	if err != nil {
		return err
	}
	var fwds []forwarderRun
	for _, via := range transports {
		env := procs.Env(append(append(v.env(via), o.pluginEnv...), b.pprofEnv("forwarder over "+via)...)...)
		proc, conn, err := startServer(ctx, h, "forward", "forward-"+via, tmp, env)
		if err != nil {
			return err
		}
		fwds = append(fwds, forwarderRun{via: via, c: kmsV2{kmsapi.NewKeyManagementServiceClient(conn)}, proc: proc})
	}
	// All plugins run at once and are measured alternately, so that
	// whatever else the machine does weighs on all alike; the idle ones
	// make no Vault requests. They share one build.
	for _, via := range transports {
		for _, gc := range []bool{true, false} {
			dir := filepath.Join(tmp, fmt.Sprintf("plugin-%s-gc-%t", via, gc))
			extra := append(b.pprofEnv(fmt.Sprintf("plugin over %s, group commit %t", via, gc)), o.pluginEnv...)
			p, err := startPlugin(ctx, h, pbin, v, via, dir, gc, extra)
			if err != nil {
				return err
			}
			b.plugins = append(b.plugins, &pluginRun{p: p, hwm: map[int]int64{}})
		}
	}
	fmt.Fprintln(out, "making ciphertexts")
	if err := b.prepare(ctx, kmsV2{kmsapi.NewKeyManagementServiceClient(hop)}, fwds); err != nil {
		return err
	}
	for _, c := range o.levels {
		if err := b.level(ctx, c); err != nil {
			return err
		}
	}
	for _, step := range []func(context.Context, *pluginRun) error{b.storm, b.statusCost} {
		for _, pr := range b.plugins {
			if err := step(ctx, pr); err != nil {
				return err
			}
		}
	}
	for _, pr := range b.plugins {
		if pr.cpu, pr.peak, err = pr.p.usage(); err != nil {
			return err
		}
		pr.p.proc.Stop(syscall.SIGTERM, harness.StopGrace)
	}
	r.points, r.plugins = b.points, b.plugins
	apiMD, err := apiserverSection(ctx, o, h, pbin, out)
	if err != nil {
		return err
	}
	r.total = time.Since(start)
	md := append(r.markdown(), apiMD...)
	if err := os.WriteFile(o.out, md, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s\nwrote %s in %s\n", md, o.out, r.total.Round(time.Second))
	return nil
}
