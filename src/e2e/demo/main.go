// Command demo is `make demo`: the plugin between a real kube-apiserver
// and a real Vault, all on 127.0.0.1. It creates a Secret with kubectl,
// shows that etcd holds only KMS v2 ciphertext, and reads the Secret back
// through the API. Everything it starts stops when it ends: on success, on
// failure (after the last lines of the logs) and on Ctrl-C.
//
// It needs the test bed's binaries (scripts/testbed.sh --adopt vault etcd
// kube-apiserver kubectl) and the plugin (make build); make demo does
// both. DEMO_KEEP=1 leaves everything running until Ctrl-C.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	plugin := fs.String("plugin", "", "the plugin binary (default: bin/vault-kms-plugin of the repository, from make build)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "demo: unexpected arguments %q (the only flag is -plugin)\n", fs.Args())
		return 2
	}
	if *plugin == "" {
		root, err := procs.RepoRoot()
		if err != nil {
			fmt.Fprintf(stderr, "demo: %v: give the plugin binary with -plugin\n", err)
			return 2
		}
		*plugin = filepath.Join(root, "bin", "vault-kms-plugin")
	}
	if _, err := os.Stat(*plugin); err != nil {
		fmt.Fprintf(stderr, "demo: no plugin binary at %s: run 'make build' first, or give one with -plugin\n", *plugin)
		return 2
	}

	// What the test bed logs through the harness (Vault's own log, when a
	// run fails) is kept, and shown trimmed with the other logs.
	var bedNotes testvault.Buffer
	h := &harness.Program{Stderr: &bedNotes, TempPrefix: "vault-kms-demo-"}
	// Ctrl-C stops what the demo started, whatever step it is in. The
	// step then fails on its stopped servers: that error is not news.
	var interrupted atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		interrupted.Store(true)
		fmt.Fprintln(stderr, "\ndemo: interrupted: stopping everything it started")
		h.RunCleanups()
		os.Exit(130)
	}()
	d := &demo{h: h, out: stdout, errOut: stderr, bedNotes: &bedNotes, interrupted: &interrupted, pluginBin: *plugin, keep: os.Getenv("DEMO_KEEP") == "1", color: isTerminal(stdout)}
	err := h.Run(d.run)
	if interrupted.Load() {
		select {} // the signal handler exits
	}
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	return 0
}

// isTerminal reports whether w is a terminal, where steps are shown bold.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
