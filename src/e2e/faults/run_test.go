package faults

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// result is one row of docs/reliability.md: the fault, its target, and
// what the case measured. misses lists the parts of the target not met.
type result struct {
	fault, target string

	measured    bool   // false when the case could not run to its end
	summary     string // the case's own figures, for the "measured" column
	calls       tally
	statusFails int
	statusDown  time.Duration // longest stretch with Status not ok
	recovery    time.Duration // from the fault's end to the last failure; -1: not applicable
	tokens      int           // Vault tokens created during the case (live-token delta or logins)
	late        int           // transit items sent after their caller's deadline; -1: not observed
	matched     int           // transit items seen and matched to their call
	lost        int           // Secrets lost; -1: not applicable
	misses      []string
}

func (r *result) miss(format string, ok bool) {
	if !ok {
		r.misses = append(r.misses, format)
	}
}

// underLoad drives workers v2 Encrypt callers and the Status poll against
// p: lead before fault, then fault (which returns when the fault ends,
// or ends at once for a fault left in place), then tail.
func underLoad(p *plugin, workers int, lead, tail time.Duration, late *lateItems, fault func()) (rec *recorder, faultStart, faultEnd time.Time) {
	rec = &recorder{late: late}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { rec.pollStatus(ctx, p); done <- struct{}{} }()
	go func() {
		rec.drive(ctx, workers, func(ctx context.Context) error { return rec.encryptV2(ctx, p) })
		done <- struct{}{}
	}()
	time.Sleep(lead)
	faultStart = time.Now()
	fault()
	faultEnd = time.Now()
	time.Sleep(tail)
	cancel()
	<-done
	<-done
	return rec, faultStart, faultEnd
}

// summarize fills the figures every row has from a recorder.
func (r *result) summarize(rec *recorder, faultEnd time.Time) {
	r.measured = true
	r.calls = count(rec.calls)
	st := count(rec.status)
	r.statusFails = st.failed
	r.statusDown, _ = longestDown(rec.status)
	last := r.calls.lastFailure
	if st.lastFailure.After(last) {
		last = st.lastFailure
	}
	r.recovery = 0
	if last.After(faultEnd) {
		r.recovery = last.Sub(faultEnd)
	}
}

// checkLost decrypts what the case's Encrypts produced, directly in Vault.
func (r *result) checkLost(t *testing.T, c *api.Client, rec *recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := lostSecrets(ctx, c, rec.sealed)
	if err != nil {
		t.Fatal(err)
	}
	r.lost = n
	r.miss("0 Secrets lost", n == 0)
}

// liveTokens is tokens(c), failing the test on error.
func liveTokens(t *testing.T, c *api.Client) int {
	t.Helper()
	n, err := tokens(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
