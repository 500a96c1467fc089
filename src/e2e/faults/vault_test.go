package faults

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/faultproxy"
)

const mount = "transit"

// transitBatch is the largest batch the suite sends to transit at once.
const transitBatch = 500

// sealDirect makes n ciphertexts of fresh DEKs with key, in the plugin's
// format ("<key>:<transit ciphertext>"), through transit batches as root:
// the storms' input, made before any fault or limit is in place.
func sealDirect(ctx context.Context, c *api.Client, key string, n int) ([]sealed, error) {
	out := make([]sealed, 0, n)
	for len(out) < n {
		size := min(transitBatch, n-len(out))
		pts := make([][]byte, size)
		items := make([]map[string]any, size)
		for i := range pts {
			pts[i] = dek()
			items[i] = map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pts[i])}
		}
		sec, err := c.Logical().WriteWithContext(ctx, mount+"/encrypt/"+key, map[string]any{"batch_input": items})
		if err != nil {
			return nil, fmt.Errorf("encrypt %d DEKs with key %q: %w", size, key, err)
		}
		results, _ := sec.Data["batch_results"].([]any)
		if len(results) != size {
			return nil, fmt.Errorf("encrypt with key %q: %d results for %d items", key, len(results), size)
		}
		for i, r := range results {
			ct, _ := r.(map[string]any)["ciphertext"].(string)
			if ct == "" {
				return nil, fmt.Errorf("encrypt with key %q: item %d has no ciphertext: %v", key, i, r)
			}
			out = append(out, sealed{ct: []byte(key + ":" + ct), pt: pts[i]})
		}
	}
	return out, nil
}

// lostSecrets decrypts every ciphertext with transit directly, as root,
// and returns how many no longer give their plaintext: Secrets lost.
func lostSecrets(ctx context.Context, c *api.Client, all []sealed) (int, error) {
	byKey := map[string][]sealed{}
	lost := 0
	for _, s := range all {
		key, ct, ok := strings.Cut(string(s.ct), ":")
		if !ok {
			lost++
			continue
		}
		byKey[key] = append(byKey[key], sealed{ct: []byte(ct), pt: s.pt})
	}
	for key, list := range byKey {
		for start := 0; start < len(list); start += transitBatch {
			part := list[start:min(start+transitBatch, len(list))]
			items := make([]map[string]any, len(part))
			for i, s := range part {
				items[i] = map[string]any{"ciphertext": string(s.ct)}
			}
			sec, err := c.Logical().WriteWithContext(ctx, mount+"/decrypt/"+key, map[string]any{"batch_input": items})
			if err != nil {
				return 0, fmt.Errorf("decrypt %d ciphertexts with key %q to count lost Secrets: %w", len(items), key, err)
			}
			results, _ := sec.Data["batch_results"].([]any)
			for i, s := range part {
				var pt []byte
				if i < len(results) {
					b64, _ := results[i].(map[string]any)["plaintext"].(string)
					pt, _ = base64.StdEncoding.DecodeString(b64)
				}
				if !bytes.Equal(pt, s.pt) {
					lost++
				}
			}
		}
	}
	return lost, nil
}

// tokens is the number of live tokens in Vault (root's view of
// auth/token/accessors).
func tokens(ctx context.Context, c *api.Client) (int, error) {
	sec, err := c.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil {
		return 0, fmt.Errorf("list token accessors: %w", err)
	}
	if sec == nil {
		return 0, nil
	}
	keys, _ := sec.Data["keys"].([]any)
	return len(keys), nil
}

// lateItems matches the items of transit requests seen by a fault proxy
// (plaintexts and ciphertexts) to the deadlines of the calls that carried
// them, and counts those sent to Vault after their caller had given up.
type lateItems struct {
	mu      sync.Mutex
	due     map[string]time.Time
	matched int
	late    int
}

func newLateItems(p *faultproxy.Proxy) *lateItems {
	l := &lateItems{due: map[string]time.Time{}}
	p.OnRequest(l.observe)
	return l
}

// expect notes that item (a base64 plaintext or a transit ciphertext) is
// part of a call whose caller gives up at deadline.
func (l *lateItems) expect(item string, deadline time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.due[item] = deadline
}

func (l *lateItems) observe(r faultproxy.Request) {
	var body struct {
		Plaintext  string `json:"plaintext"`
		Ciphertext string `json:"ciphertext"`
		BatchInput []struct {
			Plaintext  string `json:"plaintext"`
			Ciphertext string `json:"ciphertext"`
		} `json:"batch_input"`
	}
	if json.Unmarshal(r.Body, &body) != nil {
		return
	}
	items := []string{body.Plaintext, body.Ciphertext}
	for _, it := range body.BatchInput {
		items = append(items, it.Plaintext, it.Ciphertext)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range items {
		deadline, ok := l.due[it]
		if it == "" || !ok {
			continue
		}
		l.matched++
		if r.At.After(deadline) {
			l.late++
		}
	}
}

func (l *lateItems) counts() (matched, late int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.matched, l.late
}
