package procs

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// WaitFor calls f every interval until it returns nil, and returns how long
// that took; after timeout, or once ctx ends, it returns f's last error.
func WaitFor(ctx context.Context, timeout, every time.Duration, what string, f func() error) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := f()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("%s: not after %s: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%s: %w (last: %w)", what, ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

// Tail is the last n lines of a file, for failure messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
