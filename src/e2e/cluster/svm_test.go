package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// svmSection is the heading of runbook 1's StorageVersionMigration steps,
// which storageVersionMigration runs as written.
const svmSection = "### With the StorageVersionMigration API"

// svmRunbook is what the test takes from that section: the flags of step 1
// by component, and step 2's shell commands.
type svmRunbook struct {
	flags  map[string][]string // e.g. kube-apiserver → [--feature-gates=...]
	script string
}

// readSVMRunbook reads runbook 1's StorageVersionMigration section from
// docs/runbooks.md: its first plain code block (the flags, as
// "component: --flag" lines with continuation lines) and its first sh block.
func readSVMRunbook(t testing.TB) svmRunbook {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(bed.RepoRoot(t), "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n"+svmSection+"\n")
	if !ok {
		t.Fatalf("docs/runbooks.md has no %q section", svmSection)
	}
	if i := strings.Index(section, "\n### "); i >= 0 {
		section = section[:i]
	}
	// A block inside a list item is indented; Markdown takes the fence's
	// indentation off its lines, and so must we (a heredoc's end marker
	// must start its line).
	fence := regexp.MustCompile("(?ms)^([ \t]*)```(\\w*)\n(.*?)^[ \t]*```")
	rb := svmRunbook{flags: map[string][]string{}}
	for _, m := range fence.FindAllStringSubmatch(section, -1) {
		indent, lang, body := m[1], m[2], m[3]
		lines := strings.Split(body, "\n")
		for i := range lines {
			lines[i] = strings.TrimPrefix(lines[i], indent)
		}
		body = strings.Join(lines, "\n")
		switch {
		case lang == "" && len(rb.flags) == 0:
			component := ""
			for _, line := range strings.Split(body, "\n") {
				fields := strings.Fields(line)
				if len(fields) > 0 && strings.HasSuffix(fields[0], ":") {
					component, fields = strings.TrimSuffix(fields[0], ":"), fields[1:]
				}
				for _, f := range fields {
					if component == "" || !strings.HasPrefix(f, "--") {
						t.Fatalf("docs/runbooks.md, %s: step 1's block has %q, not a flag under a component", svmSection, f)
					}
					rb.flags[component] = append(rb.flags[component], f)
				}
			}
		case lang == "sh" && rb.script == "":
			rb.script = body
		}
	}
	if len(rb.flags["kube-apiserver"]) == 0 || len(rb.flags["kube-controller-manager"]) == 0 || rb.script == "" {
		t.Fatalf("docs/runbooks.md, %s: want the flags of kube-apiserver and kube-controller-manager and a sh block, got %v and %q", svmSection, rb.flags, rb.script)
	}
	return rb
}

// storageVersionMigration follows runbook 1 with the StorageVersionMigration
// API after a rotation of the key in use: the flags of its step 1 on
// kube-apiserver and kube-controller-manager, its step 2's commands as a
// shell runs them, then its check in etcd: every Secret is under the new
// key version.
func (b *clusterRun) storageVersionMigration(t *testing.T) {
	rb := readSVMRunbook(t)
	// The key in use since stage 9; every Secret is under its version 1.
	if v := b.rotate(t, newKey); v != 2 {
		t.Fatalf("rotated %s to version %d, want 2", newKey, v)
	}
	bed.WaitFor(t, 10*parseDuration(t, refreshEnv), "the plugin's Status on "+newKey+" v2", func() error {
		if id := b.statusKeyID(t); !strings.HasPrefix(id, newKey+"/v2/") {
			return fmt.Errorf("key_id %s", id)
		}
		return nil
	})
	before, _ := b.scanAllV2(t, newKey+"/v1/", newKey+":vault:v1:")

	// Step 1. The apiserver restarts with the runbook's flags, as a static
	// pod does when its manifest changes, and reads the new key_id at once.
	b.StopAPIServer()
	b.StartAPIServer(t, filepath.Join(b.LogDir, "encryption-config-v2.yaml"), rb.flags["kube-apiserver"]...)
	b.startSVMController(t, rb.flags["kube-controller-manager"])

	// Before you start: a new Secret carries the new version.
	bed.WaitEvery(t, apiserverStatusInterval+10*time.Second, 3*time.Second, "a write under "+newKey+" v2", func() error {
		name := b.uniqueName("rotation-check")
		b.createSecret(t, name)
		o, err := decodeV2(b.EtcdGet(t, testNS, name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(o.KeyID, newKey+"/v2/") {
			return fmt.Errorf("still under %s", o.KeyID)
		}
		return nil
	})

	// Step 2, as written.
	start := time.Now()
	out := b.runAsOperator(t, rb.script, 3*time.Minute)
	t.Logf("runbook 1, step 2 (%s):\n%s", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(out))

	// Verify: no Secret is left under the old version.
	after, deks := b.scanAllV2(t, newKey+"/v2/", newKey+":vault:v2:")
	if after < before {
		t.Fatalf("etcd held %d Secrets before the migration, %d after", before, after)
	}
	t.Logf("the migration rewrote all %d Secrets under %s v2 (%d distinct DEK ciphertexts)", after, newKey, len(deks))
	b.checkNothingLost(t)
	b.checkSecretsRead(t)
}

// startSVMController starts kube-controller-manager with the runbook's
// flags and only the controllers the migration needs: the
// storage-version-migrator, and the garbage collector, whose cache of each
// resource the migrator reads (1.37 refuses to start it without).
func (b *clusterRun) startSVMController(t *testing.T, runbookFlags []string) {
	args := append([]string{
		"--kubeconfig=" + b.Kubeconfig, "--authentication-kubeconfig=" + b.Kubeconfig, "--authorization-kubeconfig=" + b.Kubeconfig,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", testvault.FreePort(t)), "--leader-elect=false",
		"--controllers=garbage-collector-controller,storage-version-migrator-controller",
	}, runbookFlags...)
	p := bed.StartProc(t, "kube-controller-manager", filepath.Join(b.LogDir, "kube-controller-manager.log"), b.Dir,
		bed.Bin(t, "kube-controller-manager"), args, nil)
	b.top.Cleanup(func() { p.Stop(syscall.SIGTERM, 30*time.Second) })
}

// runAsOperator runs a runbook's shell commands with bash -e, kubectl on the
// PATH and the admin's kubeconfig, and returns their output.
func (b *clusterRun) runAsOperator(t *testing.T, script string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+b.Kubeconfig,
		"PATH="+filepath.Dir(b.KubectlBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("runbook commands: %v (timeout %s)\n%s\n--- kube-controller-manager.log:\n%s", err, timeout, out,
			procs.Tail(filepath.Join(b.LogDir, "kube-controller-manager.log"), 30))
	}
	return string(out)
}
