package kms

import (
	"errors"
	"regexp"
	"strings"
)

// The ciphertext handed to the apiserver is "<key name>:<transit ciphertext>".
// Naming the key lets any configured key decrypt what it encrypted, for
// KMS v1 too, whose requests carry nothing but the ciphertext. Transit key
// names cannot contain ':', so the first ':' ends the name.

// transitRE matches a transit ciphertext: "vault:v<version>:<base64>".
var transitRE = regexp.MustCompile(`^vault:v[1-9][0-9]{0,9}:[A-Za-z0-9+/]+={0,2}$`)

var errBadCiphertext = errors.New("ciphertext is not one this plugin produced")

func formatCiphertext(key, transit string) []byte {
	return []byte(key + ":" + transit)
}

// parseCiphertext splits a ciphertext into key name and transit
// ciphertext. A bare transit ciphertext (written by plugins that did not
// name the key) gives an empty key name.
func parseCiphertext(b []byte) (key, transit string, err error) {
	s := string(b)
	if transitRE.MatchString(s) {
		return "", s, nil
	}
	key, transit, ok := strings.Cut(s, ":")
	if !ok || key == "" || !transitRE.MatchString(transit) {
		return "", "", errBadCiphertext
	}
	return key, transit, nil
}
