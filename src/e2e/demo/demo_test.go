package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
)

// TestDemo runs the demo as make demo does, on the real test bed, and
// checks what it tells and that nothing it started outlives it: no
// process, no file, whether it passes, fails or is interrupted.
func TestDemo(t *testing.T) {
	for _, name := range []string{"vault", "etcd", "kube-apiserver", "kubectl"} {
		bed.Bin(t, name)
	}
	work := t.TempDir()
	demoBin := filepath.Join(work, "demo")
	if out, err := exec.Command("go", "build", "-o", demoBin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the demo: %v\n%s", err, out)
	}
	pluginBin := bed.BuildPlugin(t, work)

	for _, tc := range []struct {
		name string
		// plugin is the binary given as the plugin: /bin/true exits at
		// once, as a broken plugin would.
		plugin string
		// longTMPDIR puts the demo's TMPDIR so deep that the plugin's
		// socket path would not fit.
		longTMPDIR bool
		// interruptAt is a line of the demo's output at which it gets
		// SIGINT ("": none).
		interruptAt string
		wantCode    int
		wantOut     []string // in stdout, in this order
		wantErr     []string // in stderr
	}{
		{
			name:   "passes",
			plugin: pluginBin,
			wantOut: []string{
				"== Start a Vault dev server", "transit key kube-secrets created",
				"== Start the plugin", "plugin ready on unix://",
				"== Start etcd and kube-apiserver", "endpoint: unix://", "kube-apiserver ready",
				"== kubectl create secret generic demo --from-literal=password=hunter2-demo", "secret/demo created",
				"== What etcd stores under /registry/secrets/default/demo", "k8s:enc:kms:v2:vault:",
				`-> encrypted: prefix k8s:enc:kms:v2:vault:, and no "hunter2-demo" in it`,
				"== kubectl get secret demo", "password=hunter2-demo",
				"Demo passed",
			},
		},
		{
			name:     "plugin exits at start",
			plugin:   "/bin/true",
			wantCode: 1,
			wantOut:  []string{"== Start the plugin"},
			wantErr:  []string{"--- last lines of plugin.log", "--- last lines of Vault's log", "demo: vault-kms-plugin exited (exit status 0)"},
		},
		{
			name:       "TMPDIR too long for the socket",
			plugin:     pluginBin,
			longTMPDIR: true,
			wantCode:   1,
			wantErr:    []string{"is 1", "bytes long, more than a unix socket's 107: set TMPDIR to a shorter directory"},
		},
		{
			name:        "interrupted with everything running",
			plugin:      pluginBin,
			interruptAt: "== kubectl create secret",
			wantCode:    130,
			wantErr:     []string{"demo: interrupted: stopping everything it started"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The demo's TMPDIR, empty again once it ends. Not t.TempDir():
			// with the test's name in it the plugin's socket path would pass
			// the 108 bytes a unix socket's path may have.
			tmp, err := os.MkdirTemp("", "demo-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(tmp) })
			demoTmp := tmp
			if tc.longTMPDIR {
				demoTmp = filepath.Join(tmp, strings.Repeat("d", 100))
				if err := os.Mkdir(demoTmp, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(demoBin, "-plugin", tc.plugin)
			cmd.Env = append(os.Environ(), "TMPDIR="+demoTmp)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			pipe, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var stdout strings.Builder
			lines := bufio.NewScanner(pipe)
			for lines.Scan() {
				stdout.WriteString(lines.Text() + "\n")
				if tc.interruptAt != "" && strings.HasPrefix(lines.Text(), tc.interruptAt) {
					if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
						t.Fatal(err)
					}
				}
			}
			err = cmd.Wait()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			t.Logf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d", code, tc.wantCode)
			}
			checkInOrder(t, "stdout", stdout.String(), tc.wantOut)
			checkInOrder(t, "stderr", stderr.String(), tc.wantErr)
			if left, _ := os.ReadDir(demoTmp); len(left) > 0 {
				t.Errorf("the demo left %d entries in its TMPDIR %s, e.g. %s", len(left), demoTmp, left[0].Name())
			}
			if pids := processesUsing(tmp); len(pids) > 0 {
				t.Errorf("processes still running with %s in their command line or environment: %v", tmp, pids)
			}
		})
	}
}

func checkInOrder(t *testing.T, what, text string, want []string) {
	t.Helper()
	rest := text
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s lacks %q (after the lines before it)", what, w)
			return
		}
		rest = rest[i+len(w):]
	}
}

// processesUsing is the pids of the processes that name dir in their
// command line or environment: the servers the demo started, there.
// It gives a process that is being killed (a kubectl the demo ran when
// it was interrupted dies with it) a few seconds to go.
func processesUsing(dir string) []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var pids []string
		procDirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procDirs {
			for _, f := range []string{"cmdline", "environ"} {
				b, err := os.ReadFile(filepath.Join(p, f))
				if err == nil && bytes.Contains(b, []byte(dir)) && filepath.Base(p) != strconv.Itoa(os.Getpid()) {
					pids = append(pids, filepath.Base(p))
					break
				}
			}
		}
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(200 * time.Millisecond)
	}
}
