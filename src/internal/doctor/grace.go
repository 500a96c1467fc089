package doctor

import (
	"fmt"
	"time"
)

// longGrace is where the grace stops buying availability worth its risk:
// Vault outages that long are not blips, and the apiserver's own 3 minutes
// come on top.
const longGrace = 15 * time.Minute

// lbAdvice is what a load balancer in front of apiservers should check.
const lbAdvice = "point load balancers at /readyz?exclude=kms-providers or /livez, not /healthz or /readyz"

// checkStatusGrace says what VAULT_KMS_STATUS_GRACE means for the
// control plane: every apiserver's /healthz and /readyz include the plugin's
// Status (check kms-providers), so Status failing fails them all at once.
func (d *Doctor) checkStatusGrace() {
	g := d.Cfg.StatusGrace
	switch {
	case g == 0:
		d.add("status grace", Warn,
			"VAULT_KMS_STATUS_GRACE=0: Status fails as soon as Vault does not answer, and with it the kms-providers check of every apiserver's /healthz and /readyz",
			"set VAULT_KMS_STATUS_GRACE (2m rides out leader elections and restarts), and "+lbAdvice)
	case g > longGrace:
		d.add("status grace", Warn,
			fmt.Sprintf("VAULT_KMS_STATUS_GRACE=%s: during an outage the apiserver writes under a key nobody has verified for %s plus its own 3m; data written under a key deleted meanwhile is lost", g, g),
			fmt.Sprintf("keep it to a few minutes (at most %s), and %s", longGrace, lbAdvice))
	default:
		d.add("status grace", Pass,
			fmt.Sprintf("Status keeps the last verified key_id for %s while Vault is unreachable, then every apiserver's kms-providers check fails: %s", g, lbAdvice), "")
	}
}
