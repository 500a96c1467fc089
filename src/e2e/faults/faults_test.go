package faults

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

var out = flag.String("out", "", "write the report here (default: docs/reliability.md of the repository)")

// faultCase is one row: the fault, its target, and the code that injects
// the one and measures the other.
type faultCase struct {
	name, fault, target string
	run                 func(t *testing.T, r *result)
}

var cases = []faultCase{
	{"active-killed", "active Vault node killed (3-node raft cluster; the plugin at a standby)",
		"Status never fails; failed calls only during the election; 0 Secrets lost", activeKilled},
	{"vault-crashed", "the one Vault killed (SIGKILL) under load, then started and unsealed (TLS, HTTP/2, no proxy)",
		"Status never fails; failed calls only while Vault is down; 0 Secrets lost", vaultCrashed},
	{"blackhole-2s", "Vault blackholed for 2 s (every connection held, no reset)",
		"Status never fails; no call outlives its caller's 3 s deadline", blackholed2s},
	{"answers-cut", "every 5th Vault answer cut mid-body (connection closed after the headers): v2 Encrypts, then a 10,000-decrypt storm",
		"0 failed calls; Status never fails; 0 Secrets lost", answersCut},
	{"latency-c128", "Vault latency +1.5 s at c=128 (v1 Encrypt)",
		"no fewer successful calls than one call per request (VAULT_KMS_GROUP_COMMIT=false) at the same latency; 0 items sent after their deadline", latencyC128},
	{"policy-lacks-decrypt", "policy lacks decrypt on one listed key (AppRole), 10,000 decrypts",
		"PermissionDenied with a message that names the path; at most 2 logins per minute; every replaced token revoked", policyLacksDecrypt},
	{"rate-limit", "rate-limit quota of 20 requests/s, 10,000-decrypt storm",
		"0 failed calls", rateLimited},
	{"listener-limits", "listener limit of 100 array elements (and a request budget), 10,000-decrypt storm",
		"0 failed calls", listenerLimited},
	{"snapshot-behind", "reader behind on a rotation (key snapshot older than the ciphertext)",
		"Unavailable and a re-read, never InvalidArgument", snapshotBehind},
	{"established-blackholed", "established connection blackholed, new connections fine (TLS Vault, HTTP/2)",
		"healthy again within 15 s", establishedBlackholed},
	{"outage-beyond-grace", "real outage longer than the grace (connections refused and reset)",
		"Status fails once the key was last read longer than VAULT_KMS_STATUS_GRACE ago, as documented (at once without that setting)", outageBeyondGrace},
}

// TestFaults runs every case, writes the report, and fails for each target
// not met.
func TestFaults(t *testing.T) {
	start := time.Now()
	bin := pluginBin(t)
	vaultVersion := version(t, testvault.Bin(t), "version")
	pluginVersion := version(t, bin, "version")
	var results []*result
	for _, c := range cases {
		r := &result{fault: c.fault, target: c.target, recovery: -1, late: -1, lost: -1}
		results = append(results, r)
		t.Run(c.name, func(t *testing.T) {
			c.run(t, r)
			for _, m := range r.misses {
				t.Errorf("target not met: %s (%s)", m, r.summary)
			}
			t.Logf("%s: %s", c.name, r.summary)
		})
	}
	meta := fmt.Sprintf("Measured on %s with %s and vault-kms-plugin %s, %d CPUs; the suite took %s.\n",
		time.Now().UTC().Format("2006-01-02"), vaultVersion, pluginVersion, runtime.NumCPU(), time.Since(start).Round(time.Second))
	path := *out
	if path == "" {
		root, err := procs.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(root, "docs", "reliability.md")
	}
	if err := os.WriteFile(path, markdown(results, meta), 0o644); err != nil {
		t.Fatalf("write the report: %v", err)
	}
	t.Logf("wrote %s", path)
}

// version is the first line of `bin args...`.
func version(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = procs.Env()
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v", bin, strings.Join(args, " "), err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	// The test bed's Vault makes its build date up from the clock: leave it
	// out, or every run would change the report.
	return buildDate.ReplaceAllString(line, "")
}

var buildDate = regexp.MustCompile(`, built \S+`)
