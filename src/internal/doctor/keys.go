package doctor

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// checkKeys checks the token's capabilities on each key's paths, then the
// keys themselves.
func (d *Doctor) checkKeys(ctx context.Context) {
	mount := d.Cfg.TransitPath
	for i, key := range d.Cfg.KeyNames {
		need := map[string]string{ // path -> capability the plugin uses
			mount + "/decrypt/" + key: "update",
		}
		if i == 0 {
			need[mount+"/encrypt/"+key] = "update"
			need[mount+"/keys/"+key] = "read"
		}
		canRead := d.checkPolicy(ctx, key, need)
		if i == 0 || canRead {
			d.checkKey(ctx, key, i == 0)
		}
	}
	d.checkUpsert(ctx)
}

// checkPolicy reports missing and surplus capabilities; it returns whether
// the key's metadata is readable.
func (d *Doctor) checkPolicy(ctx context.Context, key string, need map[string]string) (canRead bool) {
	var missing, risky []string
	paths := make([]string, 0, len(need)+1)
	for p := range need {
		paths = append(paths, p)
	}
	keysPath := d.Cfg.TransitPath + "/keys/" + key
	if _, ok := need[keysPath]; !ok {
		paths = append(paths, keysPath)
	}
	// A wildcard policy is where create does harm: encrypt with a key that
	// does not exist creates it. Ask about a mistyped sibling name too.
	paths = append(paths, d.Cfg.TransitPath+"/encrypt/"+key+"-mistyped")
	slices.Sort(paths)
	for _, p := range paths {
		caps, err := d.Client.Sys().CapabilitiesSelfWithContext(ctx, p)
		if err != nil {
			d.add("policy "+key, Fail, fmt.Sprintf("cannot read the token's capabilities on %s: %v", p, err), "")
			return false
		}
		if p == keysPath {
			canRead = slices.Contains(caps, "read") || slices.Contains(caps, "root")
		}
		if slices.Contains(caps, "root") {
			risky = append(risky, p+" (root: the token can do anything)")
			continue
		}
		if want, ok := need[p]; ok && !slices.Contains(caps, want) {
			missing = append(missing, fmt.Sprintf("%s on %s", want, p))
		}
		if strings.Contains(p, "/encrypt/") && slices.Contains(caps, "create") {
			risky = append(risky, p+" (create: a mistyped key name would silently create a new key)")
		}
		for _, c := range []string{"delete", "sudo"} {
			if slices.Contains(caps, c) {
				risky = append(risky, fmt.Sprintf("%s (%s)", p, c))
			}
		}
	}
	switch {
	case len(missing) > 0:
		var fix strings.Builder
		for _, m := range missing {
			capab, path, _ := strings.Cut(m, " on ")
			fmt.Fprintf(&fix, `path %q { capabilities = [%q] } `, path, capab)
		}
		d.add("policy "+key, Fail, "the token lacks "+strings.Join(missing, ", "), "add to the plugin's policy: "+strings.TrimSpace(fix.String()))
	case len(risky) > 0:
		d.add("policy "+key, Warn, "the token may do more than the plugin needs: "+strings.Join(risky, "; "),
			"grant only update on encrypt/ and decrypt/, and read on keys/")
	default:
		d.add("policy "+key, Pass, "update on encrypt and decrypt, read on keys; nothing more", "")
	}
	return canRead
}

// checkKey checks what the plugin needs of a key, then its settings;
// encrypts says whether new data is written with it.
func (d *Doctor) checkKey(ctx context.Context, key string, encrypts bool) {
	tr := d.transit()
	k, err := tr.ReadKey(ctx, key)
	if err != nil {
		fix := fmt.Sprintf("create it: vault write -f %s/keys/%s", d.Cfg.TransitPath, key)
		if vault.KindOf(err) != vault.NotFound {
			fix = "check VAULT_KMS_TRANSIT_PATH and the key name"
		}
		d.add("key "+key, Fail, err.Error(), fix)
		return
	}
	switch {
	case !k.SupportsEncryption || !k.SupportsDecryption:
		d.add("key "+key, Fail, fmt.Sprintf("type %s cannot both encrypt and decrypt", k.Type), "use an aes256-gcm96 key")
	case k.DeletionAllowed:
		d.add("key "+key, Fail, "deletion_allowed is true: deleting the key destroys every Secret encrypted with it",
			fmt.Sprintf("vault write %s/keys/%s/config deletion_allowed=false", d.Cfg.TransitPath, key))
	case k.MinDecryptionVersion > 1:
		d.add("key "+key, Warn, fmt.Sprintf("min_decryption_version is %d: data under versions 1-%d can no longer be read", k.MinDecryptionVersion, k.MinDecryptionVersion-1),
			"raise it only after rewriting every Secret (kubectl get secrets -A -o json | kubectl replace -f -)")
	default:
		d.add("key "+key, Pass, fmt.Sprintf("type %s, version %d (created %s), deletion not allowed", k.Type, k.LatestVersion, k.LatestCreated.Format(time.DateOnly)), "")
	}
	d.checkKeySettings(ctx, key, encrypts)
}

// checkRoundTrip encrypts and decrypts a random value with the first key,
// as the plugin will.
func (d *Doctor) checkRoundTrip(ctx context.Context) {
	key := d.Cfg.KeyNames[0]
	tr := d.transit()
	probe := make([]byte, 32)
	_, _ = rand.Read(probe)
	start := time.Now()
	ct, err := tr.Encrypt(ctx, key, 0, probe)
	if err == nil {
		var pt []byte
		pt, err = tr.Decrypt(ctx, key, ct)
		if err == nil && string(pt) != string(probe) {
			err = fmt.Errorf("decrypt returned different bytes")
		}
	}
	if err != nil {
		d.add("round trip", Fail, err.Error(), "see the policy and key checks above")
		return
	}
	d.add("round trip", Pass, fmt.Sprintf("encrypt and decrypt with %q in %s", key, time.Since(start).Round(time.Millisecond)), "")
}

// transit calls Vault with the token the login check obtained.
func (d *Doctor) transit() *vault.Transit {
	s := vault.NewSession(d.Client, vault.StaticToken{Token: d.Client.Token()}, d.Cfg.VaultTimeout, slog.New(slog.DiscardHandler), nil)
	return vault.NewTransit(s, d.Cfg.TransitPath, d.Cfg.VaultTimeout, false)
}
