package apiserver

import "testing"

// Every round measures each configuration once, every configuration is
// measured first in some round, and over four rounds each one follows at
// least two different configurations.
func TestTurnVariesWhatComesBefore(t *testing.T) {
	const n, rounds = 5, 4
	before := make([]map[int]bool, n)
	for i := range before {
		before[i] = map[int]bool{}
	}
	first := map[int]bool{}
	for round := range rounds {
		seen := map[int]bool{}
		prev := -1
		for i := range n {
			c := turn(i, round, n)
			if c < 0 || c >= n || seen[c] {
				t.Fatalf("round %d: position %d gives configuration %d, not a permutation", round, i, c)
			}
			seen[c] = true
			if i == 0 {
				first[c] = true
			}
			if prev >= 0 {
				before[c][prev] = true
			}
			prev = c
		}
	}
	if len(first) < rounds {
		t.Errorf("only %d configurations went first in %d rounds", len(first), rounds)
	}
	for c, preds := range before {
		if len(preds) < 2 {
			t.Errorf("configuration %d always follows the same one (%v)", c, preds)
		}
	}
}
