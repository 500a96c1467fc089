package kms

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// transitSpec is what a transit ciphertext looks like, as a regular
// expression: isTransit must agree with it on every input.
var transitSpec = regexp.MustCompile(`^vault:v[1-9][0-9]{0,9}:[A-Za-z0-9+/]+={0,2}$`)

func TestIsTransit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"vault:v1:QUJD", true},
		{"vault:v1:QUI=", true},
		{"vault:v1:QQ==", true},
		{"vault:v1234567890:a+/9", true},
		{"vault:v12345678901:QUJD", false}, // 11 digits
		{"vault:v0:QUJD", false},
		{"vault:v01:QUJD", false},
		{"vault:v:QUJD", false},
		{"vault:v1:", false},
		{"vault:v1:=", false},
		{"vault:v1:==", false},
		{"vault:v1:QQ===", false},
		{"vault:v1:Q=Q", false},
		{"vault:v1:QUJD\n", false},
		{"vault:v1:QU JD", false},
		{"vault:v1:QUJD-_", false},
		{"vault:v1QUJD", false},
		{"vault:1:QUJD", false},
		{"Vault:v1:QUJD", false},
		{"kube:vault:v1:QUJD", false},
		{"", false},
		{"vault:v", false},
		{"vault:v1", false},
		{"vault:v1:QUJD:", false},
		{"vault:v1:é", false},
	} {
		if got := isTransit(tc.in); got != tc.want {
			t.Errorf("isTransit(%q) = %t, want %t", tc.in, got, tc.want)
		}
		if spec := transitSpec.MatchString(tc.in); spec != tc.want {
			t.Errorf("the specification says %t for %q, the table %t", spec, tc.in, tc.want)
		}
	}
}

// Random strings near the format: isTransit agrees with the specification
// on every one (the seed is fixed, so a failure repeats).
func TestIsTransitAgreesWithTheSpecification(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	parts := []string{"vault", ":", "v", "0", "1", "9", "12345", "QUJD", "a", "+", "/", "=", "==", "-", " ", "\n", "é"}
	matched := 0
	for range 200000 {
		var b strings.Builder
		if r.IntN(2) == 0 {
			b.WriteString("vault:v")
		}
		for range r.IntN(8) {
			b.WriteString(parts[r.IntN(len(parts))])
		}
		s := b.String()
		want := transitSpec.MatchString(s)
		if got := isTransit(s); got != want {
			t.Fatalf("isTransit(%q) = %t, the specification says %t", s, got, want)
		}
		if want {
			matched++
		}
	}
	if matched == 0 {
		t.Fatal("no generated string was a transit ciphertext: the test checks only refusals")
	}
}
