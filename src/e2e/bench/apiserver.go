package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/bench/apiserver"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
)

// apiserverFlags are the settings of the kube-apiserver section.
func apiserverFlags(fs *flag.FlagSet, o *apiserver.Options) {
	fs.DurationVar(&o.Window, "apiserver-d", 8*time.Second, "kube-apiserver section: measured window of each Secret-create point")
	fs.DurationVar(&o.Warmup, "apiserver-warmup", time.Second, "kube-apiserver section: unmeasured warm-up of each point")
	fs.IntVar(&o.Rounds, "apiserver-rounds", 4, "kube-apiserver section: rounds each point's window is split into, the configurations taken in turn")
	fs.IntVar(&o.Secrets, "apiserver-secrets", 10000, "kube-apiserver section: Secrets stored for the start-up measure")
	fs.IntVar(&o.Slices, "apiserver-slices", 20, "kube-apiserver section: KMS v2 DEKs the start-up's Secrets are spread over")
	fs.IntVar(&o.Repeats, "apiserver-repeats", 2, "kube-apiserver section: start-ups measured per configuration (the median is reported)")
}

// checkAPIServerFlags says which of the section's flags is out of range
// and what it takes.
func checkAPIServerFlags(o apiserver.Options) error {
	switch {
	case o.Window <= 0:
		return fmt.Errorf("-apiserver-d %s: give each point a positive window, e.g. 8s", o.Window)
	case o.Warmup < 0:
		return fmt.Errorf("-apiserver-warmup %s: give a warm-up of 0 or more", o.Warmup)
	case o.Rounds < 1:
		return fmt.Errorf("-apiserver-rounds %d: split each point into 1 or more rounds", o.Rounds)
	case o.Secrets < 1 || o.Repeats < 1:
		return fmt.Errorf("-apiserver-secrets %d, -apiserver-repeats %d: both must be 1 or more", o.Secrets, o.Repeats)
	case o.Slices < 1 || o.Slices > o.Secrets:
		return fmt.Errorf("-apiserver-slices %d: spread the Secrets over 1 to -apiserver-secrets (%d) DEKs", o.Slices, o.Secrets)
	}
	return nil
}

// apiserverSection runs the kube-apiserver section with the plugin pbin
// and returns its markdown; its targets are printed to out.
func apiserverSection(ctx context.Context, o *options, h *harness.Program, pbin string, out io.Writer) ([]byte, error) {
	ao := o.apiserver
	ao.PluginBin, ao.Progress = pbin, out
	res, err := apiserver.Run(ctx, h, ao)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver section: %w", err)
	}
	var md bytes.Buffer
	res.Markdown(&md)
	fmt.Fprintln(out, "kube-apiserver targets:")
	for _, t := range res.Targets() {
		fmt.Fprintln(out, t)
	}
	return md.Bytes(), nil
}

// apiserverOnly is `-only apiserver`: the section alone, written to -out;
// the section builds its own plugin.
func apiserverOnly(ctx context.Context, o *options, h *harness.Program, out io.Writer) error {
	start := time.Now()
	md, err := apiserverSection(ctx, o, h, "", out)
	if err != nil {
		return err
	}
	md = append([]byte("# What vault-kms-plugin costs a kube-apiserver\n\n"), md...)
	if err := os.WriteFile(o.out, md, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s\nwrote %s in %s\n", md, o.out, time.Since(start).Round(time.Second))
	return nil
}
