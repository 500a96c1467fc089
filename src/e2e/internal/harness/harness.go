// Package harness lets a program that is not a test (the benchmark, the
// demo) use helpers written for tests: Program implements testvault.TB.
package harness

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
)

// Program is a testvault.TB for a program. A Fatal ends the program's run
// with an error, and the cleanups run when the run ends, last first, also
// after an error or an interrupt.
type Program struct {
	Stderr io.Writer
	// TempPrefix names the directory under which TempDir makes
	// directories (e.g. "kms-bench-"); it is removed at the end.
	TempPrefix string

	mu       sync.Mutex // the cleanups may run from a signal handler
	cleanups []func()
	root     string
	failed   bool // by a Fatal
}

// fatal is the panic by which Fatal and Fatalf leave the run; Run
// recovers it.
type fatal struct{ err error }

func (h *Program) Helper() {}

func (h *Program) Fatal(args ...any) { h.fail(errors.New(fmt.Sprint(args...))) }

func (h *Program) Fatalf(format string, args ...any) { h.fail(fmt.Errorf(format, args...)) }

func (h *Program) fail(err error) {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
	panic(fatal{err})
}

func (h *Program) Logf(format string, args ...any) { fmt.Fprintf(h.Stderr, format+"\n", args...) }

// Failed reports whether a Fatal ended the run, so that testvault shows
// Vault's log when it stops. Other errors carry the output of the process
// they come from.
func (h *Program) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

func (h *Program) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

// TempDir is a new directory, removed when the run ends.
func (h *Program) TempDir() string {
	h.mu.Lock()
	root := h.root
	h.mu.Unlock()
	if root == "" {
		var err error
		if root, err = os.MkdirTemp("", h.TempPrefix); err != nil {
			h.Fatal(err)
		}
		h.mu.Lock()
		h.root = root
		h.mu.Unlock()
		h.Cleanup(func() { os.RemoveAll(root) })
	}
	dir, err := os.MkdirTemp(root, "")
	if err != nil {
		h.Fatal(err)
	}
	return dir
}

// Run calls f, turns a Fatal into f's error, then runs the cleanups.
func (h *Program) Run(f func() error) (err error) {
	defer h.RunCleanups()
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = f.err
		}
	}()
	return f()
}

// RunCleanups runs the cleanups registered so far, last first, each once:
// Run calls it at the end, a signal handler may call it before.
func (h *Program) RunCleanups() {
	h.mu.Lock()
	cleanups := h.cleanups
	h.cleanups = nil
	h.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}

// StopGrace is how long a child process has to exit after SIGTERM before
// it is killed.
const StopGrace = 10 * time.Second

// Start starts bin with args and env, its output going to logPath, and
// stops it when the run ends.
func (h *Program) Start(name, logPath string, env []string, bin string, args ...string) (*procs.Process, error) {
	p, err := procs.Start(name, logPath, "", bin, args, env)
	if err != nil {
		return nil, err
	}
	h.Cleanup(func() { p.Stop(syscall.SIGTERM, StopGrace) })
	return p, nil
}

// Output is the last lines a process printed, for error messages.
func Output(p *procs.Process) string {
	return fmt.Sprintf("%s output (%s):\n%s", p.Name, p.LogPath, p.Tail(20))
}
