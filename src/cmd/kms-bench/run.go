package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	kmsapi "k8s.io/kms/apis/v2"
)

// benchmark runs everything and writes the report.
func benchmark(ctx context.Context, o *options, cl *cleanups, out io.Writer) error {
	start := time.Now()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	vbin := filepath.Join(root, "bin", "vault")
	if _, err := os.Stat(vbin); err != nil {
		return fmt.Errorf("no Vault at %s: run 'scripts/testbed.sh vault' (or make bench) first", vbin)
	}
	tmp, err := os.MkdirTemp("", "kms-bench-")
	if err != nil {
		return err
	}
	cl.add(func() { os.RemoveAll(tmp) })
	r := &report{o: o, start: start.UTC(), machine: describeMachine()}
	if r.vault, err = vaultVersion(ctx, vbin); err != nil {
		return err
	}
	fmt.Fprintln(out, "building the plugin")
	pbin, err := buildPlugin(ctx, root)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "starting %s\n", r.vault)
	v, err := startVault(ctx, vbin, tmp, cl)
	if err != nil {
		return err
	}
	// The reference servers run with the plugins' extra environment, so
	// that all run under the same Go runtime settings.
	_, hop, err := startServer(ctx, "hop", tmp, append(os.Environ(), o.pluginEnv...), cl)
	if err != nil {
		return err
	}
	fwdEnv := childEnv(append([]string{"VAULT_ADDR=" + v.addr, "VAULT_TOKEN=" + v.token}, o.pluginEnv...)...)
	fwdProc, fwd, err := startServer(ctx, "forward", tmp, fwdEnv, cl)
	if err != nil {
		return err
	}
	b := &bench{o: o, v: v, out: out}
	// Both plugins run at once and are measured alternately, so that
	// whatever else the machine does weighs on both alike; the idle one
	// makes no Vault requests.
	for _, gc := range []bool{true, false} {
		p, err := startPlugin(ctx, pbin, v, filepath.Join(tmp, fmt.Sprintf("plugin-gc-%t", gc)), gc, o.pluginEnv, cl)
		if err != nil {
			return err
		}
		b.plugins = append(b.plugins, &pluginRun{p: p, hwm: map[int]int64{}})
	}
	fmt.Fprintln(out, "making ciphertexts")
	if err := b.prepare(ctx, kmsV2{kmsapi.NewKeyManagementServiceClient(hop)},
		kmsV2{kmsapi.NewKeyManagementServiceClient(fwd)}, fwdProc); err != nil {
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
		pr.p.proc.stop()
	}
	r.points, r.plugins = b.points, b.plugins
	r.total = time.Since(start)
	md := r.markdown()
	if err := os.WriteFile(o.out, md, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s\nwrote %s in %s\n", md, o.out, r.total.Round(time.Second))
	return nil
}

// repoRoot is the nearest directory above the working directory that holds
// both Makefile and go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		_, e1 := os.Stat(filepath.Join(dir, "Makefile"))
		_, e2 := os.Stat(filepath.Join(dir, "go.mod"))
		if e1 == nil && e2 == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no directory holding Makefile and go.mod above the working directory: run from the repository")
		}
		dir = parent
	}
}
