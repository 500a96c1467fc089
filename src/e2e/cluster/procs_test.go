package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// repoRoot is the repository's root.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := procs.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// testbedBin is bin/NAME of the test bed (TESTBED_BIN overrides bin/, as
// in scripts/testbed.sh).
func testbedBin(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("TESTBED_BIN")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run 'make e2e' (or scripts/testbed.sh --adopt vault etcd kube-apiserver kubectl) first", p)
	}
	return p
}

// buildPlugin builds the plugin binary in the product's own module.
func buildPlugin(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "vault-kms-plugin")
	cmd := exec.Command("go", "build", "-C", repoRoot(t), "-o", bin, "./src/cmd/vault-kms-plugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	return bin
}

// freePort is a free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	return testvault.FreePort(t)
}

// proc is a server process the test started (a procs.Process), with its
// Wait error as a field.
type proc struct {
	p    *procs.Process
	err  error         // of Wait, valid once done is closed
	done chan struct{} // closed once err is set
}

// startProc starts bin with args and env (nil: the test's environment).
// The process dies with the test process (Pdeathsig), even if the test
// binary is killed by a timeout before its cleanups run.
func startProc(t testing.TB, name, logPath, dir, bin string, args, env []string) *proc {
	t.Helper()
	p, err := procs.Start(name, logPath, dir, bin, args, env)
	if err != nil {
		t.Fatal(err)
	}
	w := &proc{p: p, done: make(chan struct{})}
	go func() {
		<-p.Done()
		w.err = p.Err()
		close(w.done)
	}()
	return w
}

func (p *proc) pid() int { return p.p.PID() }

// running reports whether the process has not exited; once it has, err is
// set.
func (p *proc) running() bool {
	if p.p.Running() {
		return true
	}
	<-p.done
	return false
}

// stop sends sig, waits up to grace for the exit, then kills. It returns
// how long the process took to exit and its Wait error.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) (time.Duration, error) {
	d, err := p.p.Stop(sig, grace)
	<-p.done
	return d, err
}

// exitCode is the exit status of a stopped process (-1 if killed by a signal).
func (p *proc) exitCode() int { return p.p.ExitCode() }
