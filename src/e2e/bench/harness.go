package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
)

// harness lets the bench use helpers written for tests: it implements
// testvault.TB. A Fatal ends the benchmark with an error, and the cleanups
// run when the benchmark ends, last first, also after an error or an
// interrupt.
type harness struct {
	stderr   io.Writer
	cleanups []func()
	root     string // under which TempDir makes directories; removed at the end
	failed   bool   // by a Fatal
}

// fatal is the panic by which Fatal and Fatalf leave the benchmark; run
// recovers it.
type fatal struct{ err error }

func (h *harness) Helper() {}

func (h *harness) Fatal(args ...any) { h.fail(errors.New(fmt.Sprint(args...))) }

func (h *harness) Fatalf(format string, args ...any) { h.fail(fmt.Errorf(format, args...)) }

func (h *harness) fail(err error) {
	h.failed = true
	panic(fatal{err})
}

func (h *harness) Logf(format string, args ...any) { fmt.Fprintf(h.stderr, format+"\n", args...) }

// Failed reports whether a Fatal ended the benchmark, so that testvault
// shows Vault's log when it stops. Other errors carry the output of the
// process they come from.
func (h *harness) Failed() bool { return h.failed }

func (h *harness) Cleanup(f func()) { h.cleanups = append(h.cleanups, f) }

// TempDir is a new directory, removed when the benchmark ends.
func (h *harness) TempDir() string {
	if h.root == "" {
		root, err := os.MkdirTemp("", "kms-bench-")
		if err != nil {
			h.Fatal(err)
		}
		h.root = root
		h.Cleanup(func() { os.RemoveAll(root) })
	}
	dir, err := os.MkdirTemp(h.root, "")
	if err != nil {
		h.Fatal(err)
	}
	return dir
}

// run calls f, turns a Fatal into f's error, then runs the cleanups.
func (h *harness) run(f func() error) (err error) {
	defer func() {
		for i := len(h.cleanups) - 1; i >= 0; i-- {
			h.cleanups[i]()
		}
		h.cleanups = nil
	}()
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

// stopGrace is how long a child process has to exit after SIGTERM before
// it is killed.
const stopGrace = 10 * time.Second

// start starts bin with args and env, its output going to logPath, and
// stops it when the benchmark ends.
func (h *harness) start(name, logPath string, env []string, bin string, args ...string) (*procs.Process, error) {
	p, err := procs.Start(name, logPath, "", bin, args, env)
	if err != nil {
		return nil, err
	}
	h.Cleanup(func() { p.Stop(syscall.SIGTERM, stopGrace) })
	return p, nil
}

// output is the last lines a process printed, for error messages.
func output(p *procs.Process) string {
	return fmt.Sprintf("%s output (%s):\n%s", p.Name, p.LogPath, p.Tail(20))
}
