package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"google.golang.org/grpc/codes"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// The decrypt storm: kube-apiserver reading every Secret at once.
const (
	stormCalls   = 10000
	stormWorkers = 256
	stormLimit   = 60 * time.Second // calls not started by then count as failed
)

// stormOf makes stormCalls ciphertexts with key directly in Vault (before
// any fault is in place).
func stormOf(t *testing.T, v *testvault.Server, key string) []sealed {
	t.Helper()
	cts, err := sealDirect(context.Background(), v.Client(), key, stormCalls)
	if err != nil {
		t.Fatal(err)
	}
	return cts
}

// runStorm sends the storm to p with the Status poll beside it; late, if
// not nil, sees the transit requests.
func runStorm(p *plugin, cts []sealed, late *lateItems) (*recorder, time.Duration) {
	rec := &recorder{late: late}
	ctx, cancel := context.WithCancel(context.Background())
	polled := make(chan struct{})
	go func() { rec.pollStatus(ctx, p); close(polled) }()
	start := time.Now()
	rec.storm(p, cts, stormCalls, stormWorkers, stormLimit)
	took := time.Since(start)
	cancel()
	<-polled
	// Requests the storm queued may reach Vault after it.
	time.Sleep(callTimeout)
	return rec, took
}

// policyLacksDecrypt: the plugin's AppRole policy lets it decrypt with the
// first listed key but not the second; a storm decrypts with the second.
func policyLacksDecrypt(t *testing.T, r *result) {
	const denied = "kms-old"
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit(mount, keyName, denied)
	audit := filepath.Join(v.Dir, "audit.log")
	v.EnableFileAudit(audit)
	policy := testvault.KMSPolicy(mount, keyName) +
		fmt.Sprintf("path %q { capabilities = [\"update\"] }\npath %q { capabilities = [\"read\"] }\n",
			mount+"/encrypt/"+denied, mount+"/keys/"+denied)
	v.Policy("kms", policy)
	if err := v.Client().Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	v.Write("auth/approle/role/kms", map[string]any{"token_policies": "kms", "token_ttl": "1h"})
	sec, err := v.Client().Logical().Read("auth/approle/role/kms/role-id")
	if err != nil || sec == nil {
		t.Fatalf("read the role_id: %v", err)
	}
	secretID := v.Write("auth/approle/role/kms/secret-id", nil)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte(fmt.Sprint(secretID.Data["secret_id"])), 0o600); err != nil {
		t.Fatal(err)
	}
	cts := stormOf(t, v, denied)
	proxy, addr := proxyTo(t, v.Addr)
	late := newLateItems(proxy)
	p := startPlugin(t, "plugin (approle)", addr,
		"VAULT_KMS_AUTH_METHOD=approle",
		"VAULT_KMS_APPROLE_ROLE_ID="+fmt.Sprint(sec.Data["role_id"]),
		"VAULT_KMS_APPROLE_SECRET_ID_FILE="+secretFile,
		"VAULT_KMS_KEY_NAMES="+keyName+","+denied)
	tokensBefore := liveTokens(t, v.Client())
	loginsBefore := countAudited(t, audit, "auth/approle/login")
	rec, took := runStorm(p, cts, late)
	logins := countAudited(t, audit, "auth/approle/login") - loginsBefore
	tokensAfter := liveTokens(t, v.Client())
	r.summarize(rec, time.Now())
	r.recovery, r.lost = -1, -1
	r.matched, r.late = late.counts()
	r.tokens = logins
	minutes := int(took/time.Minute) + 1
	denials := r.calls.codes[codes.PermissionDenied]
	sent := stormCalls - r.calls.codes[codes.Canceled]
	msg := r.calls.firstMsg[codes.PermissionDenied]
	names := strings.Contains(msg, mount+"/decrypt/"+denied)
	r.summary = fmt.Sprintf("storm of %d took %s, %d sent in its %s: %d PermissionDenied, other failures: %s; message names %s/decrypt/%s: %t (“%s”); %d logins; live tokens %d → %d",
		stormCalls, fmtDur(took), sent, fmtDur(stormLimit), denials, otherCodes(r.calls, codes.PermissionDenied), mount, denied, names, clip(oneLine(msg), 200), logins, tokensBefore, tokensAfter)
	r.miss("PermissionDenied with a message that names the path", denials == sent && sent > 0 && names)
	r.miss("at most 2 logins per minute", logins <= 2*minutes)
	r.miss("every replaced token revoked", tokensAfter <= tokensBefore)
}

// rateLimited: a rate-limit quota of 20 requests/s (it applies to the
// root token too) during the storm.
func rateLimited(t *testing.T, r *result) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit(mount, keyName)
	cts := stormOf(t, v, keyName)
	proxy, addr := proxyTo(t, v.Addr)
	late := newLateItems(proxy)
	p := startPlugin(t, "plugin", addr, "VAULT_TOKEN="+v.RootToken, "VAULT_KMS_KEY_NAMES="+keyName)
	before := liveTokens(t, v.Client())
	v.Write("sys/quotas/rate-limit/kms-storm", map[string]any{"rate": 20, "interval": "1s"})
	rec, took := runStorm(p, cts, late)
	// The quota limits its own removal too: try until it lets it through.
	if _, err := procs.WaitFor(context.Background(), 30*time.Second, 200*time.Millisecond, "remove the rate-limit quota", func() error {
		_, err := v.Client().Logical().Delete("sys/quotas/rate-limit/kms-storm")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	r.summarize(rec, time.Now())
	r.recovery, r.lost = -1, -1
	r.matched, r.late = late.counts()
	r.tokens = liveTokens(t, v.Client()) - before
	r.summary = fmt.Sprintf("storm of %d took %s; %d failed (%s); first error: %s",
		stormCalls, fmtDur(took), r.calls.failed, r.calls.codeList(), clip(oneLine(firstMsg(r.calls)), 200))
	r.miss("0 failed calls", r.calls.failed == 0)
}

// Listener limits of the extra listener: at most 100 array elements, and
// a budget for the request's strings. Vault has no total-string budget of
// its own, so the request size stands in for it: 100 items of the
// plugin's ciphertexts stay well inside 32 KiB.
const listenerLimits = "max_json_array_element_count = 100\n  max_request_size = 32768"

// listenerLimited: the plugin talks to a listener with JSON limits.
func listenerLimited(t *testing.T, r *result) {
	v := testvault.Start(t, testvault.Options{ExtraListener: listenerLimits})
	v.EnableTransit(mount, keyName)
	cts := stormOf(t, v, keyName)
	before := liveTokens(t, v.Client())
	proxy, addr := proxyTo(t, v.ExtraAddr)
	late := newLateItems(proxy)
	p := startPlugin(t, "plugin", addr, "VAULT_TOKEN="+v.RootToken, "VAULT_KMS_KEY_NAMES="+keyName)
	rec, took := runStorm(p, cts, late)
	r.summarize(rec, time.Now())
	r.recovery, r.lost = -1, -1
	r.matched, r.late = late.counts()
	r.tokens = liveTokens(t, v.Client()) - before
	r.summary = fmt.Sprintf("limits %q; storm of %d took %s; %d failed (%s); first error: %s",
		strings.ReplaceAll(listenerLimits, "\n  ", ", "), stormCalls, fmtDur(took), r.calls.failed, r.calls.codeList(), clip(oneLine(firstMsg(r.calls)), 200))
	r.miss("0 failed calls", r.calls.failed == 0)
}

// snapshotBehind: one plugin has read the key before a rotation and keeps
// its snapshot (an hourly refresh); another, started after it, encrypts
// with the new version. In open-source Vault every standby forwards to the
// active node, so a lagging reader is a plugin's snapshot, not storage.
func snapshotBehind(t *testing.T, r *result) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit(mount, keyName)
	behind := startPlugin(t, "plugin behind", v.Addr, "VAULT_TOKEN="+v.RootToken, "VAULT_KMS_KEY_NAMES="+keyName, "VAULT_KMS_KEY_REFRESH_INTERVAL=1h")
	version := v.Rotate(mount, keyName)
	ahead := startPlugin(t, "plugin ahead", v.Addr, "VAULT_TOKEN="+v.RootToken, "VAULT_KMS_KEY_NAMES="+keyName)
	pt := dek()
	ctx, cancel := callCtx()
	enc, err := ahead.v2.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt, Uid: "faults"})
	cancel()
	if err != nil {
		t.Fatalf("encrypt with key version %d: %v", version, err)
	}
	rec := &recorder{}
	var sequence []string
	succeeded := false
	// kube-apiserver retries a failed read; 10 tries a second apart.
	for range 10 {
		ctx, cancel := callCtx()
		start := time.Now()
		dec, err := behind.v2.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "faults"})
		rec.add(&rec.calls, ctx, start, err)
		cancel()
		sequence = append(sequence, rec.calls[len(rec.calls)-1].code.String())
		if err == nil {
			succeeded = bytes.Equal(dec.Plaintext, pt)
			break
		}
		time.Sleep(time.Second)
	}
	r.summarize(rec, time.Now())
	r.recovery, r.late, r.lost, r.tokens = -1, -1, -1, 0
	invalid := r.calls.codes[codes.InvalidArgument]
	onlyUnavailable := r.calls.failed == r.calls.codes[codes.Unavailable]
	r.summary = fmt.Sprintf("key rotated to v%d; the lagging plugin's Decrypts: %s; decrypted right: %t",
		version, strings.Join(sequence, " → "), succeeded)
	r.miss("never InvalidArgument", invalid == 0)
	r.miss("Unavailable and a re-read (then the right plaintext)", onlyUnavailable && succeeded)
}
