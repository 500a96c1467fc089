package doctor

import (
	"strings"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
)

func TestStatusGraceAdvice(t *testing.T) {
	for _, tc := range []struct {
		grace   time.Duration
		verdict Verdict
		want    []string // in the detail or the fix
	}{
		{0, Warn, []string{"VAULT_KMS_STATUS_GRACE=0", "every apiserver's /healthz and /readyz", "set VAULT_KMS_STATUS_GRACE", "/readyz?exclude=kms-providers"}},
		{2 * time.Minute, Pass, []string{"for 2m0s while Vault is unreachable", "/readyz?exclude=kms-providers or /livez"}},
		{longGrace, Pass, []string{"for 15m0s"}},
		{time.Hour, Warn, []string{"VAULT_KMS_STATUS_GRACE=1h0m0s", "deleted meanwhile is lost", "at most 15m0s", "/readyz?exclude=kms-providers"}},
	} {
		t.Run(tc.grace.String(), func(t *testing.T) {
			d := &Doctor{Cfg: &config.Config{StatusGrace: tc.grace}}
			d.checkStatusGrace()
			if len(d.results) != 1 {
				t.Fatalf("%d results: %+v", len(d.results), d.results)
			}
			r := d.results[0]
			if r.Check != "status grace" || r.Verdict != tc.verdict {
				t.Fatalf("%s %s; want status grace %s", r.Verdict, r.Check, tc.verdict)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Detail+" fix: "+r.Fix, w) {
					t.Errorf("%q / %q lacks %q", r.Detail, r.Fix, w)
				}
			}
		})
	}
}
