package chart

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTestPodRunsTheProbe runs the helm test pod's command line with the
// real plugin binary: its flags must parse (exit 2 is a usage error), and
// with no plugin on the socket the probe must fail (exit 1) after calling
// Status there. The -endpoint is pointed at an empty temporary directory
// and -wait shortened; the chart's own -wait value must be a duration.
func TestTestPodRunsTheProbe(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build the plugin: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "vault-kms-plugin")
	build := exec.Command(goTool, "build", "-o", bin, "./src/cmd/vault-kms-plugin")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	for _, s := range valueSets(t) {
		t.Run(s.name, func(t *testing.T) {
			c := render(t, s.values(t)).testPod(t).Spec.Containers[0]
			if len(c.Command) != 1 || c.Command[0] != "/vault-kms-plugin" {
				t.Fatalf("command %q, want the plugin binary", c.Command)
			}
			args := slices.Clone(c.Args)
			sock := filepath.Join(t.TempDir(), "socket.sock")
			for i := 0; i+1 < len(args); i++ {
				switch args[i] {
				case "-endpoint":
					args[i+1] = "unix://" + sock
				case "-wait":
					if _, err := time.ParseDuration(args[i+1]); err != nil {
						t.Errorf("-wait %q: %v", args[i+1], err)
					}
					args[i+1] = "0s"
				}
			}
			var stderr bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("%s %q: %v, want exit code 1 (no plugin there)\n%s", bin, args, err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "Status on "+sock) {
				t.Errorf("the probe did not call Status on %s:\n%s", sock, stderr.String())
			}
		})
	}
}
