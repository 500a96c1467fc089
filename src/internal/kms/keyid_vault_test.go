package kms

import (
	"context"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// keyIDOn is the key_id a plugin of its own (client, session, service)
// reports on v.
func keyIDOn(t *testing.T, v *testvault.Server) string {
	t.Helper()
	st, err := onVault(t, v, time.Hour).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.KeyID
}

// Two Vault clusters holding the same key material, as a DR secondary or a
// replica does: the key is backed up from one and restored into the other,
// which keeps its versions and their creation times. Each has its own
// cluster id, and the plugins on them must still agree on the key_id, and
// read each other's ciphertexts.
func TestKeyIDIsEqualAcrossVaultClustersWithTheSameKey(t *testing.T) {
	primary := testvault.Start(t, testvault.Options{})
	primary.EnableTransit("transit", "kube")
	primary.Write("transit/keys/kube/config", map[string]any{"exportable": true, "allow_plaintext_backup": true})
	primary.Rotate("transit", "kube")
	sec, err := primary.Client().Logical().Read("transit/backup/kube")
	if err != nil {
		t.Fatal(err)
	}
	secondary := testvault.Start(t, testvault.Options{})
	secondary.EnableTransit("transit")
	secondary.Write("transit/restore", map[string]any{"backup": sec.Data["backup"]})
	if a, b := clusterID(t, primary), clusterID(t, secondary); a == b {
		t.Fatalf("both Vaults have cluster id %q; the test needs two clusters", a)
	}

	onPrimary := onVault(t, primary, time.Hour)
	stPrimary, err := onPrimary.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	onSecondary := onVault(t, secondary, time.Hour)
	stSecondary, err := onSecondary.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stPrimary.KeyID != stSecondary.KeyID {
		t.Fatalf("the same key version has key_id %q on one cluster and %q on the other", stPrimary.KeyID, stSecondary.KeyID)
	}
	// The same material: what one encrypts, the other decrypts.
	res, err := onPrimary.Encrypt(context.Background(), "uid", []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := onSecondary.Decrypt(context.Background(), "uid", &DecryptRequest{Ciphertext: res.Ciphertext, KeyID: res.KeyID})
	if err != nil || string(pt) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("the restored key does not decrypt what the original encrypted: %v", err)
	}
}

// On one Vault: two plugins agree, a restart of Vault changes nothing, a
// rotation gives a new key_id, and so does the key deleted and created
// again under the same name, which starts again at version 1.
func TestKeyIDFollowsTheKeyMaterialOnVault(t *testing.T) {
	v := testvault.Start(t, testvault.Options{Persistent: true})
	v.EnableTransit("transit", "kube")
	first := keyIDOn(t, v)
	if other := keyIDOn(t, v); other != first {
		t.Fatalf("two plugins report %q and %q for one key version", first, other)
	}

	v.Stop()
	v.Start()
	if after := keyIDOn(t, v); after != first {
		t.Fatalf("key_id %q after a Vault restart; was %q", after, first)
	}

	v.Rotate("transit", "kube")
	rotated := keyIDOn(t, v)
	if rotated == first {
		t.Fatalf("key_id %q unchanged by a rotation", rotated)
	}

	// Transit keeps a symmetric key's creation time in whole seconds: let
	// one pass, as it does between any two deliberate acts of an operator.
	created := time.Now()
	for time.Now().Unix() == created.Unix() {
		time.Sleep(20 * time.Millisecond)
	}
	deleteKey(t, v)
	v.Write("transit/keys/kube", nil)
	recreated := keyIDOn(t, v)
	if recreated == first || recreated == rotated {
		t.Fatalf("key_id %q repeats after the key was deleted and created again (before: %q, %q)", recreated, first, rotated)
	}
}

func clusterID(t *testing.T, v *testvault.Server) string {
	t.Helper()
	h, err := v.Client().Sys().Health()
	if err != nil {
		t.Fatal(err)
	}
	return h.ClusterID
}
