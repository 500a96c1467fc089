package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1beta1 "k8s.io/kms/apis/v1beta1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/faultproxy"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// behindProxy starts a Vault (o) with transit and the key, and a fault
// proxy in front of it, closed when the test ends.
func behindProxy(t *testing.T, o testvault.Options) (*testvault.Server, *faultproxy.Proxy, string) {
	t.Helper()
	v := testvault.Start(t, o)
	v.EnableTransit(mount, keyName)
	p, addr := proxyTo(t, v.Addr)
	return v, p, addr
}

// proxyTo puts a fault proxy in front of a Vault address and returns it
// with the address the plugin should use instead.
func proxyTo(t *testing.T, vaultAddr string) (*faultproxy.Proxy, string) {
	t.Helper()
	scheme, hostPort, _ := strings.Cut(vaultAddr, "://")
	p, err := faultproxy.New(hostPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, scheme + "://" + p.Addr
}

// blackholed2s holds every byte between the plugin and Vault for 2 s.
func blackholed2s(t *testing.T, r *result) {
	v, proxy, addr := behindProxy(t, testvault.Options{})
	late := newLateItems(proxy)
	before := liveTokens(t, v.Client())
	p := startPlugin(t, "plugin", addr, "VAULT_TOKEN="+v.RootToken, "VAULT_KMS_KEY_NAMES="+keyName)
	rec, _, end := underLoad(p, 8, 2*time.Second, 6*time.Second, late, func() {
		proxy.Blackhole()
		time.Sleep(2 * time.Second)
		if err := proxy.Restore(); err != nil {
			t.Error(err)
		}
	})
	r.summarize(rec, end)
	r.tokens = liveTokens(t, v.Client()) - before
	matched, lateN := late.counts()
	r.matched, r.late = matched, lateN
	r.checkLost(t, v.Client(), rec)
	outlived := r.calls.outlived
	r.summary = fmt.Sprintf("%d of %d calls failed (%s); %d calls outlived the 3 s deadline; longest call %s; %d of %d items sent after their deadline",
		r.calls.failed, r.calls.total, r.calls.codeList(), outlived, fmtDur(r.calls.longest), lateN, matched)
	r.miss("Status never fails", r.statusFails == 0)
	r.miss("no call outlives its caller's 3 s deadline", outlived == 0 && lateN == 0)
}

// latencyC128 compares group commit on and off at c=128 v1 Encrypt with
// 1.5 s added to every request to Vault.
func latencyC128(t *testing.T, r *result) {
	const (
		workers = 128
		window  = 8 * time.Second
		latency = 1500 * time.Millisecond
	)
	v, proxy, addr := behindProxy(t, testvault.Options{})
	late := newLateItems(proxy)
	proxy.SetLatency(latency)
	before := liveTokens(t, v.Client())
	type side struct {
		ok, failed, matched, late int
		codes                     string
	}
	sides := map[bool]*side{}
	var all []sealed
	for _, group := range []bool{true, false} {
		p := startPlugin(t, fmt.Sprintf("plugin (group commit %t)", group), addr,
			"VAULT_TOKEN="+v.RootToken, "VAULT_KMS_KEY_NAMES="+keyName, fmt.Sprintf("VAULT_KMS_GROUP_COMMIT=%t", group))
		m0, l0 := late.counts()
		rec := &recorder{late: late}
		ctx, cancel := context.WithTimeout(context.Background(), window)
		rec.drive(ctx, workers, func(ctx context.Context) error {
			pt := dek()
			rec.expect(ctx, pt)
			res, err := p.v1.Encrypt(ctx, &v1beta1.EncryptRequest{Version: "v1beta1", Plain: pt})
			if err == nil {
				rec.mu.Lock()
				rec.sealed = append(rec.sealed, sealed{ct: res.Cipher, pt: pt})
				rec.mu.Unlock()
			}
			return err
		})
		cancel()
		// Let items still queued reach the proxy before counting.
		time.Sleep(latency + callTimeout)
		m1, l1 := late.counts()
		tl := count(rec.calls)
		sides[group] = &side{ok: tl.total - tl.failed, failed: tl.failed, matched: m1 - m0, late: l1 - l0, codes: tl.codeList()}
		all = append(all, rec.sealed...)
		if group {
			r.calls = tl
		}
	}
	r.measured = true
	r.recovery = -1
	r.tokens = liveTokens(t, v.Client()) - before
	on, off := sides[true], sides[false]
	r.matched, r.late = on.matched, on.late
	n, err := lostSecrets(context.Background(), v.Client(), all)
	if err != nil {
		t.Fatal(err)
	}
	r.lost = n
	r.summary = fmt.Sprintf("in %s: group commit %d ok, %d failed (%s), %d of %d items sent late; one call per request %d ok, %d failed (%s), %d of %d items sent late",
		window, on.ok, on.failed, on.codes, on.late, on.matched, off.ok, off.failed, off.codes, off.late, off.matched)
	r.miss("no fewer successful calls than one call per request", on.ok >= off.ok)
	r.miss("0 items sent after their deadline", on.late == 0)
	r.miss("0 Secrets lost", n == 0)
}

// establishedBlackholed: over TLS and HTTP/2 (one connection carries
// every request), the established connection goes dead without a reset;
// new connections work.
func establishedBlackholed(t *testing.T, r *result) {
	const within = 15 * time.Second
	v, proxy, addr := behindProxy(t, testvault.Options{TLS: true})
	before := liveTokens(t, v.Client())
	p := startPlugin(t, "plugin", addr, "VAULT_TOKEN="+v.RootToken, "VAULT_CACERT="+v.CACert, "VAULT_KMS_KEY_NAMES="+keyName)
	const watched = within + 10*time.Second
	var held int
	rec, start, _ := underLoad(p, 4, 2*time.Second, watched, nil, func() { held = proxy.BlackholeEstablished() })
	r.summarize(rec, start)
	// Failures in the last seconds watched mean it had not recovered.
	recovered := r.recovery < watched-callTimeout-statusEvery
	recovery := "healthy again " + fmtDur(r.recovery) + " after the blackhole"
	if !recovered {
		recovery = "not healthy again in the " + fmtDur(watched) + " watched"
	}
	r.tokens = liveTokens(t, v.Client()) - before
	r.late = -1
	r.checkLost(t, v.Client(), rec)
	r.summary = fmt.Sprintf("%d connections held; %s; %d of %d calls failed (%s)",
		held, recovery, r.calls.failed, r.calls.total, r.calls.codeList())
	r.miss("healthy again within 15 s", recovered && r.recovery <= within && held > 0)
}

// outageBeyondGrace: Vault unreachable (connections refused, open ones
// reset) for longer than the grace. As documented, the grace counts from
// the last good key read, so Status must fail between grace minus one
// refresh interval and the grace into the outage (at once while the plugin
// has no grace setting).
func outageBeyondGrace(t *testing.T, r *result) {
	const setting = "VAULT_KMS_STATUS_GRACE"
	const refresh = 2 * time.Second
	grace := time.Duration(0)
	env := []string{"VAULT_KMS_KEY_NAMES=" + keyName, "VAULT_KMS_KEY_REFRESH_INTERVAL=" + refresh.String()}
	if hasSetting(t, setting) {
		grace = 8 * time.Second
		env = append(env, setting+"="+grace.String())
	}
	outage := grace + 15*time.Second
	v, proxy, addr := behindProxy(t, testvault.Options{})
	late := newLateItems(proxy)
	before := liveTokens(t, v.Client())
	p := startPlugin(t, "plugin", addr, append(env, "VAULT_TOKEN="+v.RootToken)...)
	rec, start, end := underLoad(p, 4, 2*time.Second, 8*time.Second, late, func() {
		if err := proxy.Refuse(); err != nil {
			t.Error(err)
		}
		proxy.Reset()
		time.Sleep(outage)
		if err := proxy.Restore(); err != nil {
			t.Error(err)
		}
	})
	r.summarize(rec, end)
	r.tokens = liveTokens(t, v.Client()) - before
	r.matched, r.late = late.counts()
	r.checkLost(t, v.Client(), rec)
	_, firstFail := longestDown(rec.status)
	// A Status poll that starts up to one interval after the moment it
	// should fail, and may take its full deadline, still counts as on time.
	slack := statusEvery + callTimeout
	failedAfter := time.Duration(-1)
	if !firstFail.IsZero() {
		failedAfter = firstFail.Sub(start)
	}
	graceText := "no " + setting + " in this build: Status should fail at once"
	if grace > 0 {
		graceText = fmt.Sprintf("%s=%s, key read every %s", setting, grace, refresh)
	}
	r.summary = fmt.Sprintf("%s; outage %s; Status first failed %s into it, down %s in all; back %s after the outage; %d of %d calls failed (%s)",
		graceText, fmtDur(outage), fmtDur(failedAfter), fmtDur(r.statusDown), fmtDur(r.recovery), r.calls.failed, r.calls.total, r.calls.codeList())
	earliest := max(grace-refresh, 0)
	r.miss("Status fails once the key was last verified longer than the grace ago (at once without one)",
		failedAfter >= earliest && failedAfter <= grace+slack)
}

// answersCut: Vault's answers end mid-body, as when Vault, or a proxy in
// front of it, drops the connection while answering. Whether Vault served
// such a request is unknown, and transit calls may be repeated, so each is
// retried within its caller's deadline.
func answersCut(t *testing.T, r *result) {
	const every = 5
	v, proxy, addr := behindProxy(t, testvault.Options{})
	cts := stormOf(t, v, keyName)
	late := newLateItems(proxy)
	before := liveTokens(t, v.Client())
	p := startPlugin(t, "plugin", addr, "VAULT_TOKEN="+v.RootToken, "VAULT_KMS_KEY_NAMES="+keyName)
	rec, _, _ := underLoad(p, 8, time.Second, 0, late, func() {
		proxy.CutAnswers(every)
		time.Sleep(4 * time.Second)
	})
	storm, took := runStorm(p, cts, late)
	cut := proxy.CutAnswers(0)
	rec.calls = append(rec.calls, storm.calls...)
	rec.status = append(rec.status, storm.status...)
	r.summarize(rec, time.Now())
	r.recovery = -1
	r.matched, r.late = late.counts()
	r.tokens = liveTokens(t, v.Client()) - before
	r.checkLost(t, v.Client(), rec)
	r.summary = fmt.Sprintf("%d answers cut; %d of %d calls failed (%s), the storm of %d took %s; first error: %s",
		cut, r.calls.failed, r.calls.total, r.calls.codeList(), stormCalls, fmtDur(took), clip(oneLine(firstMsg(r.calls)), 200))
	r.miss("0 failed calls", r.calls.failed == 0)
	r.miss("Status never fails", r.statusFails == 0)
	r.miss("the proxy cut answers", cut > 0)
}
