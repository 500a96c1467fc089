package main

import (
	"io"
	"strings"
	"testing"
)

func TestAPIServerFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string // "" for accepted
	}{
		{nil, ""},
		{[]string{"-only", "apiserver", "-apiserver-secrets", "200", "-apiserver-slices", "2"}, ""},
		{[]string{"-only", "vault"}, "-only \"vault\""},
		{[]string{"-apiserver-d", "0s"}, "-apiserver-d 0s"},
		{[]string{"-apiserver-warmup", "-1s"}, "-apiserver-warmup -1s"},
		{[]string{"-apiserver-rounds", "0"}, "-apiserver-rounds 0"},
		{[]string{"-apiserver-repeats", "0"}, "-apiserver-repeats 0"},
		{[]string{"-apiserver-secrets", "10", "-apiserver-slices", "20"}, "-apiserver-slices 20"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr strings.Builder
			o, err := parseFlags(tc.args, &stderr)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err == "" && o.apiserver.Secrets < o.apiserver.Slices:
				t.Fatalf("accepted %+v", o.apiserver)
			case tc.err != "" && (err == nil || !strings.Contains(stderr.String(), tc.err)):
				t.Fatalf("err %v, stderr %q, want it to name %q", err, stderr.String(), tc.err)
			}
		})
	}
	if _, err := parseFlags([]string{"-apiserver-slices", "x"}, io.Discard); err == nil {
		t.Error("-apiserver-slices x accepted")
	}
}
