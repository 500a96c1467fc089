package harness

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestRunEndsOnFatalAndRunsCleanupsLastFirstOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    func(h *Program) error
		wantErr string // "" for none
		failed  bool
	}{
		{"returns nil", func(*Program) error { return nil }, "", false},
		{"returns an error", func(*Program) error { return errors.New("plain") }, "plain", false},
		{"Fatal", func(h *Program) error { h.Fatal("stop ", 1); return errors.New("not reached") }, "stop 1", true},
		{"Fatalf", func(h *Program) error { h.Fatalf("stop %d", 2); return errors.New("not reached") }, "stop 2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Program{Stderr: io.Discard, TempPrefix: "harness-test-"}
			var order []int
			var dir string
			err := h.Run(func() error {
				dir = h.TempDir()
				h.Cleanup(func() { order = append(order, 1) })
				h.Cleanup(func() { order = append(order, 2) })
				return tc.body(h)
			})
			if got := errString(err); got != tc.wantErr {
				t.Fatalf("Run: %q, want %q", got, tc.wantErr)
			}
			if h.Failed() != tc.failed {
				t.Fatalf("Failed() = %v, want %v", h.Failed(), tc.failed)
			}
			h.RunCleanups() // a second call runs nothing again
			if !slices.Equal(order, []int{2, 1}) {
				t.Fatalf("cleanups ran as %v, want [2 1]", order)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("TempDir %s left after the run: %v", dir, err)
			}
		})
	}
}

func TestRunLetsOtherPanicsThrough(t *testing.T) {
	h := &Program{Stderr: io.Discard}
	cleaned := false
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.Contains(s, "a bug") || !cleaned {
			t.Fatalf("recovered %v (cleanups ran: %v), want the panic \"a bug\" after the cleanups", r, cleaned)
		}
	}()
	_ = h.Run(func() error {
		h.Cleanup(func() { cleaned = true })
		panic("a bug")
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
