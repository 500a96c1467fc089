package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// Note is a verdict that neither passes nor warns: something the doctor
// could not find out, or a choice the operator should know they made.
const Note Verdict = "NOTE"

// keySettings are the transit key's settings that decide where the key
// material can go and how it ages. vault.Key leaves them out because the
// plugin serves without them; only the doctor reads them.
type keySettings struct {
	derived              bool
	exportable           bool
	allowPlaintextBackup bool
	// autoRotatePeriod is 0 when Vault never rotates the key by itself.
	autoRotatePeriod time.Duration
}

func (d *Doctor) readKeySettings(ctx context.Context, key string) (keySettings, error) {
	ctx, cancel := context.WithTimeout(ctx, d.Cfg.VaultTimeout)
	defer cancel()
	path := d.Cfg.TransitPath + "/keys/" + key
	sec, err := d.Client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return keySettings{}, fmt.Errorf("read %s: %w", path, err)
	}
	if sec == nil || sec.Data == nil {
		return keySettings{}, fmt.Errorf("read %s: %w", path, vault.ErrKeyNotFound)
	}
	return parseKeySettings(sec.Data)
}

func parseKeySettings(data map[string]any) (keySettings, error) {
	var s keySettings
	s.derived, _ = data["derived"].(bool)
	s.exportable, _ = data["exportable"].(bool)
	s.allowPlaintextBackup, _ = data["allow_plaintext_backup"].(bool)
	period, err := parsePeriod(data["auto_rotate_period"])
	if err != nil {
		return s, fmt.Errorf("auto_rotate_period: %w", err)
	}
	s.autoRotatePeriod = period
	return s, nil
}

// parsePeriod reads a period Vault gives in seconds; a Go duration string
// is accepted too, as servers that speak Vault's API may send one. Absent
// means Vault predates the setting: no automatic rotation.
func parsePeriod(v any) (time.Duration, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		sec, err := v.Int64()
		if err != nil || sec < 0 {
			return 0, fmt.Errorf("%q is not a number of seconds", v.String())
		}
		return time.Duration(sec) * time.Second, nil
	case float64:
		if v < 0 {
			return 0, fmt.Errorf("%v is negative", v)
		}
		return time.Duration(v) * time.Second, nil
	case string:
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%q is not a duration", v)
		}
		return d, nil
	}
	return 0, fmt.Errorf("unexpected %T", v)
}

// checkKeySettings reports where the key material may go and, for the key
// that encrypts, how it rotates.
func (d *Doctor) checkKeySettings(ctx context.Context, key string, encrypts bool) {
	s, err := d.readKeySettings(ctx, key)
	if err != nil {
		d.add("key "+key+" material", Warn, fmt.Sprintf("cannot read the key's settings: %v", err),
			fmt.Sprintf("check by hand: vault read %s/keys/%s", d.Cfg.TransitPath, key))
		return
	}
	d.reportMaterial(key, s)
	if encrypts {
		d.reportRotation(key, s.autoRotatePeriod)
	}
}

func (d *Doctor) reportMaterial(key string, s keySettings) {
	check := "key " + key + " material"
	if s.derived {
		// Vault cannot change derived on an existing key.
		d.add(check, Fail, "derived is true: every encrypt and decrypt needs a context, which the plugin does not send, so each call fails",
			fmt.Sprintf("create a key without derivation (vault write -f %s/keys/<new-name>) and set VAULT_KMS_KEY_NAMES to it", d.Cfg.TransitPath))
	}
	var leaks []string
	if s.exportable {
		leaks = append(leaks, "exportable is true: the key can be exported from Vault (and Vault cannot turn that off again)")
	}
	if s.allowPlaintextBackup {
		leaks = append(leaks, "allow_plaintext_backup is true: a backup of the key holds it in plaintext (and Vault cannot turn that off again)")
	}
	if len(leaks) > 0 {
		d.add(check, Warn, strings.Join(leaks, "; ")+"; whoever gets the key and a copy of etcd can read every Secret without Vault",
			fmt.Sprintf("restrict read on %[1]s/export/ and %[1]s/backup/ in every policy; to be rid of it, create a key without these settings, put it first in VAULT_KMS_KEY_NAMES and rewrite every Secret (kubectl get secrets -A -o json | kubectl replace -f -)", d.Cfg.TransitPath))
	}
	if !s.derived && len(leaks) == 0 {
		d.add(check, Pass, "not derived, not exportable, no plaintext backup: the key cannot leave Vault", "")
	}
}

func (d *Doctor) reportRotation(key string, period time.Duration) {
	check := "key " + key + " rotation"
	runbook := "then rewrite old data (kubectl get secrets -A -o json | kubectl replace -f -) before raising min_decryption_version"
	if period == 0 {
		d.add(check, Note, "auto_rotate_period is 0: Vault never rotates the key by itself",
			fmt.Sprintf("rotate it yourself (vault write -f %[1]s/keys/%[2]s/rotate) or set a period (vault write %[1]s/keys/%[2]s/config auto_rotate_period=2160h); %[3]s", d.Cfg.TransitPath, key, runbook))
		return
	}
	d.add(check, Pass, fmt.Sprintf("auto_rotate_period is %s: the plugin takes up each new version within VAULT_KMS_KEY_REFRESH_INTERVAL=%s; %s", period, d.Cfg.KeyRefreshInterval, runbook), "")
}
