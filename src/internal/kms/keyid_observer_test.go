package kms

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// The key_id observer hears each key_id Status comes to report, once, in
// order: the first read, not a refresh that finds the same key, and a
// rotation. The metrics' key_id_info is built on it.
func TestKeyIDObserverHearsEachNewKeyID(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	var mu sync.Mutex
	var heard []string
	s := onVault(t, v, time.Hour, WithKeyIDObserver(func(keyID string) {
		mu.Lock()
		defer mu.Unlock()
		heard = append(heard, keyID)
	}))
	var reported []string
	for _, step := range []struct {
		name   string
		change func()
	}{
		{"first read", func() {}},
		{"refresh, same key", func() {}},
		{"rotation", func() { v.Rotate("transit", "kube") }},
		{"refresh after it", func() {}},
	} {
		step.change()
		if err := s.Refresh(context.Background()); err != nil {
			t.Fatalf("%s: refresh: %v", step.name, err)
		}
		st, err := s.Status(context.Background())
		if err != nil {
			t.Fatalf("%s: Status: %v", step.name, err)
		}
		if len(reported) == 0 || reported[len(reported)-1] != st.KeyID {
			reported = append(reported, st.KeyID)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 2 || !slices.Equal(heard, reported) {
		t.Fatalf("the observer heard %q; Status reported %q (want the two key_ids, once each, in order)", heard, reported)
	}
}
