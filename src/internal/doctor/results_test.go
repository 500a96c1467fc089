package doctor

import (
	"slices"
	"strings"
	"testing"
)

// expectResults fails t unless the results named check have the verdicts
// want (none for nil) and their details and fixes hold each of texts.
func expectResults(t *testing.T, results []Result, check string, want []Verdict, texts []string) {
	t.Helper()
	var verdicts []Verdict
	var text strings.Builder
	for _, r := range results {
		if r.Check == check {
			verdicts = append(verdicts, r.Verdict)
			text.WriteString(r.Detail + " fix: " + r.Fix + "\n")
		}
	}
	if !slices.Equal(verdicts, want) {
		t.Fatalf("%s: verdicts %v, want %v; results %+v", check, verdicts, want, results)
	}
	for _, w := range texts {
		if !strings.Contains(text.String(), w) {
			t.Errorf("%q lacks %q", text.String(), w)
		}
	}
}
