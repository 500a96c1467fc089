package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

const keyName = "kms"

// activeKilled kills the active node of a 3-node raft cluster under load.
// The plugin talks to a standby, which forwards to whichever node is
// active: the address list of a real deployment usually names one node
// or a load balancer, and a standby is the node that stays up here.
func activeKilled(t *testing.T, r *result) {
	c := testvault.StartCluster(t, 3)
	active, err := c.WaitActive(-1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Nodes[active].EnableTransit(mount, keyName)
	standby := (active + 1) % len(c.Nodes)
	root := c.Nodes[standby].Client()
	before := liveTokens(t, root)
	proxy, addr := proxyTo(t, c.Nodes[standby].Addr)
	late := newLateItems(proxy)
	p := startPlugin(t, "plugin at a standby", addr,
		"VAULT_TOKEN="+c.RootToken, "VAULT_KMS_KEY_NAMES="+keyName)

	var elected int
	var electErr error
	rec, killedAt, electedAt := underLoad(p, 8, 3*time.Second, 8*time.Second, late, func() {
		c.Nodes[active].Kill()
		elected, electErr = c.WaitActive(active, 60*time.Second)
	})
	if electErr != nil {
		t.Fatal(electErr)
	}
	r.summarize(rec, electedAt)
	r.tokens = liveTokens(t, root) - before
	r.matched, r.late = late.counts()
	election := electedAt.Sub(killedAt)
	outside := failedOutside(rec.calls, killedAt, electedAt)
	r.checkLost(t, root, rec)
	r.summary = fmt.Sprintf("election %s (node%d → node%d); %d of %d calls failed (%s), %d of them outside the election",
		fmtDur(election), active, elected, r.calls.failed, r.calls.total, r.calls.codeList(), outside)
	r.miss("Status never fails", r.statusFails == 0)
	r.miss("failed calls only during the election", outside == 0)
}

// vaultCrashed kills the plugin's one Vault under load, as an OOM kill or a
// lost machine would, and brings it back with its data (started and
// unsealed). It runs over TLS with no proxy between, so that the calls on
// the HTTP/2 connection when Vault dies end as a real Vault ends them.
func vaultCrashed(t *testing.T, r *result) {
	pki := bed.NewPKI(t, t.TempDir())
	cert, key := pki.Issue(t, "vault", bed.ServingTemplate("vault"))
	v := testvault.Start(t, testvault.Options{ServingCert: &testvault.ServingCert{CertFile: cert, KeyFile: key, CAFile: pki.CAFile}})
	v.EnableTransit(mount, keyName)
	before := liveTokens(t, v.Client())
	p := startPlugin(t, "plugin", v.Addr, "VAULT_TOKEN="+v.RootToken, "VAULT_CACERT="+v.CACert, "VAULT_KMS_KEY_NAMES="+keyName)
	rec, killedAt, upAt := underLoad(p, 8, 2*time.Second, 6*time.Second, nil, func() {
		v.Kill()
		v.Start()
	})
	r.summarize(rec, upAt)
	r.tokens = liveTokens(t, v.Client()) - before
	r.late = -1
	r.checkLost(t, v.Client(), rec)
	outside := failedOutside(rec.calls, killedAt, upAt)
	r.summary = fmt.Sprintf("Vault down %s (killed, started, unsealed); %d of %d calls failed (%s), %d of them outside that",
		fmtDur(upAt.Sub(killedAt)), r.calls.failed, r.calls.total, r.calls.codeList(), outside)
	r.miss("Status never fails", r.statusFails == 0)
	r.miss("failed calls only while Vault is down", outside == 0)
}
