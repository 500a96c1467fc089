package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// fmtDur rounds a duration for the report; a negative one is "—".
func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "—"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func fmtCount(n int) string {
	if n < 0 {
		return "—"
	}
	return fmt.Sprint(n)
}

// oneLine folds a multi-line error message (Vault's are) into one line,
// without the random ports of the run's servers, so that two runs with
// the same behaviour write the same words.
func oneLine(s string) string {
	return localPort.ReplaceAllString(strings.Join(strings.Fields(s), " "), "127.0.0.1:PORT")
}

var localPort = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)

// fmtLate is "late of matched" items, or "—" when the case cannot see
// them (TLS, or no proxy).
func fmtLate(r *result) string {
	if r.late < 0 {
		return "—"
	}
	return fmt.Sprintf("%d of %d", r.late, r.matched)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// firstMsg is the message of one failure, the most frequent code's.
func firstMsg(t tally) string {
	best, n := codes.OK, 0
	for c, k := range t.codes {
		if k > n {
			best, n = c, k
		}
	}
	return t.firstMsg[best]
}

// otherCodes lists the failures other than code.
func otherCodes(t tally, code codes.Code) string {
	other := t
	other.codes = map[codes.Code]int{}
	other.failed = 0
	for c, n := range t.codes {
		if c != code {
			other.codes[c] = n
			other.failed += n
		}
	}
	return other.codeList()
}

// countAudited is the number of requests to path in a file audit log.
func countAudited(t *testing.T, file, path string) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mark := []byte(`"path":"` + path + `"`)
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if line := sc.Bytes(); bytes.Contains(line, []byte(`"type":"request"`)) && bytes.Contains(line, mark) {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// markdown is docs/reliability.md.
func markdown(results []*result, meta string) []byte {
	var b bytes.Buffer
	b.WriteString(`# Reliability

What the plugin does when Vault or the network misbehaves, measured by the
fault suite (` + "`make faults`" + `, ` + "`src/e2e/faults`" + `), which wrote this file. It
runs the real plugin binary as kube-apiserver does (a 3 s deadline on every
call, KMS v1 decrypt storms of 10,000 calls) against real Vault servers on
127.0.0.1, and injects each fault with Vault's own settings or with a TCP
fault proxy of ours (` + "`src/e2e/internal/faultproxy`" + `). Status is polled
every second rather than kube-apiserver's 10 s, so that an outage is
measured to the second. A target not met fails the suite.

`)
	b.WriteString(meta)
	b.WriteString("\n| fault | target | measured | met? |\n| --- | --- | --- | --- |\n")
	for _, r := range results {
		met := "met"
		switch {
		case !r.measured:
			met = "NOT measured"
		case len(r.misses) > 0:
			met = "NOT met: " + strings.Join(r.misses, "; ")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(r.fault), cell(r.target), cell(r.summary), cell(met))
	}
	b.WriteString(`
The same cases, in the figures every case records. Calls failed: of all
KMS calls in the case, with their gRPC codes. Status down: the longest time
Status was not ok. Recovery: from the fault's end to the last failure.
Tokens: Vault tokens created during the case (AppRole logins in Vault's
audit log, or the change in live tokens). Sent late: transit items the
plugin sent to Vault after their caller's deadline, of those the fault
proxy saw and matched to a call. Lost: ciphertexts produced in the case
that no longer decrypt.
"—" where a figure does not apply to the case.

| fault | calls failed | Status failures | Status down | recovery | tokens | sent late | lost |
| --- | --- | --- | --- | --- | --- | --- | --- |
`)
	for _, r := range results {
		if !r.measured {
			fmt.Fprintf(&b, "| %s | — | — | — | — | — | — | — |\n", cell(r.fault))
			continue
		}
		fmt.Fprintf(&b, "| %s | %d of %d (%s) | %d | %s | %s | %d | %s | %s |\n", cell(r.fault),
			r.calls.failed, r.calls.total, r.calls.codeList(), r.statusFails, fmtDur(r.statusDown),
			fmtDur(r.recovery), r.tokens, fmtLate(r), fmtCount(r.lost))
	}
	b.WriteString(howMade)
	return b.Bytes()
}

// howMade says how each fault is made, where that is a choice.
const howMade = `
## How the faults are made

- **Active node killed**: three raft nodes (` + "`src/internal/testvault/cluster.go`" + `,
  raft's shortest timers, every node a voter); the plugin's VAULT_ADDR is
  a standby, which forwards to whichever node is active, so the plugin
  itself stays connected. The active node gets SIGKILL. The election is
  measured from the kill until a new node says it is active and serves a
  request.
- **Blackholes, latency, outages**: the plugin talks to Vault through the
  fault proxy. A blackhole holds bytes without a reset (new connections
  are accepted but pass nothing); the established-connection blackhole
  holds the connections open at that moment for good and lets new ones
  through; the outage refuses new connections and resets open ones. The
  latency is added to every request on its way to Vault. The proxy reads
  the plain-HTTP requests it forwards and matches their plaintexts and
  ciphertexts to the calls that carried them, which is how an item sent
  after its caller's deadline is seen.
- **Policy without one decrypt path**: AppRole login; the policy lets the
  plugin read, encrypt and decrypt with the first listed key, and read and
  encrypt but not decrypt with the second. Logins are counted in Vault's
  file audit log, live tokens with ` + "`auth/token/accessors`" + `.
- **Rate limit**: a global ` + "`sys/quotas/rate-limit`" + ` quota of 20 requests per
  second, which binds the root token too, set after the plugin started.
- **Listener limits**: a second listener on the dev server with
  ` + "`max_json_array_element_count = 100`" + `. Vault 1.21 has no budget for
  a request's strings as a whole, so ` + "`max_request_size = 32768`" + ` stands
  in for one.
- **Reader behind on a rotation**: in open-source Vault every standby
  forwards to the active node, so no Vault node serves an old key version;
  what lags is a plugin's key snapshot. One plugin (hourly refresh) is
  started before the rotation, another after it; the first decrypts what
  the second encrypted, with the second's key_id, ten tries a second apart
  as the apiserver would retry.
- **Storms**: 10,000 KMS v1 Decrypts from 256 callers of ciphertexts made
  beforehand; calls not started within 60 s count as failed (Canceled).
- Not done: the apiserver-level view of an outage (` + "`/readyz?exclude=kms-providers`" + `
  and ` + "`/healthz`" + ` of a real kube-apiserver).
`

func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
