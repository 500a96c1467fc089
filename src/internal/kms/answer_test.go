package kms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A real Vault honours key_version, so wrong answers come from a fake: a
// proxy that rewrites them. TestEncryptChecksVaultsAnswerOnVault is the
// real-Vault side.
func TestEncryptRefusesAnAnswerOfAnotherVersion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(version int, pt []byte) string
	}{
		{"newer version", func(v int, pt []byte) string { return fmt.Sprintf("vault:v%d:%s", v+1, encodeB64(pt)) }},
		{"version sharing the digits", func(v int, pt []byte) string { return fmt.Sprintf("vault:v%d0:%s", v, encodeB64(pt)) }},
		{"no version", func(_ int, pt []byte) string { return "vault:" + encodeB64(pt) }},
		{"empty", func(int, []byte) string { return "" }},
		{"no payload", func(v int, _ []byte) string { return fmt.Sprintf("vault:v%d:", v) }},
		{"not base64", func(v int, _ []byte) string { return fmt.Sprintf("vault:v%d:secret dek", v) }},
		{"trailing newline", func(v int, pt []byte) string { return fmt.Sprintf("vault:v%d:%s\n", v, encodeB64(pt)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake("kube")
			s := newService(t, f, "kube")
			f.answer = tc.answer
			res, err := s.Encrypt(context.Background(), "uid", []byte("dek"))
			if err == nil {
				t.Fatalf("encrypt returned %q; want Vault's answer refused", res.Ciphertext)
			}
			if !errors.Is(err, ErrBadAnswer) || errors.Is(err, ErrInvalidInput) {
				t.Fatalf("error %v; want ErrBadAnswer and not ErrInvalidInput", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, `"vault:v1:"`) || !strings.Contains(msg, "VAULT_ADDR") {
				t.Errorf("error %q names neither the pinned prefix nor what to check", msg)
			}
			if bad := tc.answer(1, []byte("dek")); len(bad) > len("vault:v1:") && strings.Contains(msg, bad) {
				t.Errorf("error %q quotes the ciphertext", msg)
			}
		})
	}
}

// Whatever Encrypt returns, Decrypt reads back.
func TestEncryptReturnsOnlyWhatDecryptReads(t *testing.T) {
	f := newFake("kube")
	s := newService(t, f, "kube")
	for _, version := range []int{1, 9, 10, 123} {
		for f.keys["kube"].LatestVersion < version {
			f.rotate("kube")
		}
		if err := s.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		res, err := s.Encrypt(context.Background(), "uid", []byte("dek"))
		if err != nil {
			t.Fatalf("version %d: %v", version, err)
		}
		if want := fmt.Sprintf("kube:vault:v%d:", version); !strings.HasPrefix(string(res.Ciphertext), want) {
			t.Fatalf("version %d: ciphertext %q; want prefix %q", version, res.Ciphertext, want)
		}
		pt, err := s.Decrypt(context.Background(), "uid", &DecryptRequest{Ciphertext: res.Ciphertext, KeyID: res.KeyID})
		if err != nil || string(pt) != "dek" {
			t.Fatalf("version %d: decrypt = %q, %v", version, pt, err)
		}
	}
}
