package doctor

import (
	"context"
	"fmt"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// checkUpsert reports whether transit creates a key when asked to encrypt
// with a name it does not know. The plugin's policy needs no read on
// config/keys, so a token that may not read it gets a note, not a failure.
func (d *Doctor) checkUpsert(ctx context.Context) {
	const check = "transit upsert"
	path := d.Cfg.TransitPath + "/config/keys"
	fix := fmt.Sprintf("vault write %s disable_upsert=true", path)
	ctx, cancel := context.WithTimeout(ctx, d.Cfg.VaultTimeout)
	defer cancel()
	sec, err := d.Client.Logical().ReadWithContext(ctx, path)
	switch {
	case vault.KindOf(err) == vault.Denied:
		d.add(check, Note, fmt.Sprintf("the plugin's token may not read %s (the plugin does not need to), so whether encrypt creates missing keys is unknown", path),
			fmt.Sprintf("check with an operator's token: vault read %s; if disable_upsert is false: %s", path, fix))
		return
	case err != nil:
		d.add(check, Note, fmt.Sprintf("cannot read %s: %v", path, err),
			fmt.Sprintf("check by hand: vault read %s; if disable_upsert is false: %s", path, fix))
		return
	}
	var disabled bool
	if sec != nil && sec.Data != nil {
		disabled, _ = sec.Data["disable_upsert"].(bool)
	}
	if !disabled {
		d.add(check, Warn, fmt.Sprintf("%s has disable_upsert false: encrypt with a key name that does not exist creates that key, so a typo in a key name, by any token with create on %s/encrypt/, silently starts a new key instead of failing", path, d.Cfg.TransitPath), fix)
		return
	}
	d.add(check, Pass, fmt.Sprintf("%s has disable_upsert true: encrypt never creates a key", path), "")
}
