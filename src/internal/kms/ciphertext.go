package kms

import (
	"errors"
	"strings"
)

// The ciphertext handed to the apiserver is "<key name>:<transit ciphertext>".
// Naming the key lets any configured key decrypt what it encrypted, for
// KMS v1 too, whose requests carry nothing but the ciphertext. Transit key
// names cannot contain ':', so the first ':' ends the name.

// isTransit reports whether s is a transit ciphertext:
// "vault:v<version>:<base64>", the version 1 to 10 digits without a
// leading zero, the base64 at least one character of A-Z a-z 0-9 + /
// followed by at most two '='. It runs on every call; written out by hand
// it costs a fraction of the regular expression it replaced (which the
// tests keep as its specification).
func isTransit(s string) bool {
	rest, ok := strings.CutPrefix(s, "vault:v")
	if !ok {
		return false
	}
	digits := 0
	for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
		digits++
	}
	if digits == 0 || digits > 10 || rest[0] == '0' || digits == len(rest) || rest[digits] != ':' {
		return false
	}
	b64 := rest[digits+1:]
	pad := 0
	for pad < 2 && pad < len(b64) && b64[len(b64)-1-pad] == '=' {
		pad++
	}
	body := b64[:len(b64)-pad]
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

var errBadCiphertext = errors.New("ciphertext is not one this plugin produced")

func formatCiphertext(key, transit string) []byte {
	return []byte(key + ":" + transit)
}

// parseCiphertext splits a ciphertext into key name and transit
// ciphertext. A bare transit ciphertext (written by plugins that did not
// name the key) gives an empty key name.
func parseCiphertext(b []byte) (key, transit string, err error) {
	s := string(b)
	if isTransit(s) {
		return "", s, nil
	}
	key, transit, ok := strings.Cut(s, ":")
	if !ok || key == "" || !isTransit(transit) {
		return "", "", errBadCiphertext
	}
	return key, transit, nil
}
