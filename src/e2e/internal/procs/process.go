// Package procs starts the servers that the end-to-end tests and the
// benchmark run as child processes (etcd, kube-apiserver, the plugin, the
// benchmark's reference servers), stops them, and waits for them to serve.
package procs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a child process whose output is appended to a log file, so
// that a server started again keeps one log.
type Process struct {
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // of Wait, valid once done is closed
}

// Start starts bin with args in dir ("" for the current directory) and
// env (nil for this process's environment). The process dies with this
// one (Pdeathsig), even if this one is killed before it can stop it.
func Start(name, logPath, dir, bin string, args, env []string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the log of %s: %w", name, err)
	}
	fmt.Fprintf(f, "\n===== %s: start %s %q\n", time.Now().Format(time.RFC3339Nano), bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(f, "===== %s: exited: %v\n", time.Now().Format(time.RFC3339Nano), p.err)
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process's id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's Wait error: nil before it exits, and after a clean
// exit.
func (p *Process) Err() error {
	if p.Running() {
		return nil
	}
	return p.err
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends sig, waits up to grace for the exit, then kills. It returns
// how long the process took to exit and its Wait error.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) (time.Duration, error) {
	start := time.Now()
	if !p.Running() {
		return 0, p.err
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return time.Since(start), p.err
}

// ExitCode is the exit status of an exited process (-1 if a signal killed
// it).
func (p *Process) ExitCode() int {
	var ee *exec.ExitError
	switch err := p.Err(); {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// Tail is the last n lines of the process's log, for failure messages.
func (p *Process) Tail(n int) string { return Tail(p.LogPath, n) }
