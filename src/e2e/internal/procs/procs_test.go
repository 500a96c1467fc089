package procs

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcessExit(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		stop     bool // stop it with SIGTERM instead of letting it exit
		wantCode int
		wantLog  string
	}{
		{name: "clean exit", script: "echo hello", wantCode: 0, wantLog: "hello"},
		{name: "exit status", script: "echo failing >&2; exit 3", wantCode: 3, wantLog: "failing"},
		{name: "stopped", script: "echo serving; exec sleep 60", stop: true, wantCode: -1, wantLog: "serving"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "p.log")
			p, err := Start(tt.name, logPath, "", "/bin/sh", []string{"-c", tt.script}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.stop {
				// The script must have started before the signal, or sh
				// dies before it prints.
				if _, err := WaitFor(context.Background(), 10*time.Second, 10*time.Millisecond, "output", func() error {
					if !strings.Contains(p.Tail(5), tt.wantLog) {
						return errors.New("not yet")
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if _, err := p.Stop(syscall.SIGTERM, 10*time.Second); err == nil {
					t.Fatal("Stop of a process killed by SIGTERM returned no error")
				}
			} else {
				select {
				case <-p.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("the process did not exit")
				}
			}
			if p.Running() {
				t.Fatal("Running after the exit")
			}
			if got := p.ExitCode(); got != tt.wantCode {
				t.Errorf("ExitCode = %d, want %d", got, tt.wantCode)
			}
			if got := p.Tail(5); !strings.Contains(got, tt.wantLog) || !strings.Contains(got, "exited") {
				t.Errorf("log tail %q lacks %q or the exit line", got, tt.wantLog)
			}
		})
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	_, err := WaitFor(context.Background(), time.Second, time.Millisecond, "the third call", func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("WaitFor = %v after %d calls, want nil after 3", err, calls)
	}

	cause := errors.New("still down")
	_, err = WaitFor(context.Background(), 50*time.Millisecond, 10*time.Millisecond, "a server", func() error { return cause })
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "a server: not after 50ms") {
		t.Fatalf("WaitFor after the timeout = %v, want the last error with what and the timeout", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = WaitFor(ctx, time.Minute, 10*time.Millisecond, "a server", func() error { return cause })
	if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Fatalf("WaitFor with a cancelled context = %v, want context.Canceled and the last error", err)
	}
}
