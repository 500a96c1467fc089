package vault

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Batcher is group commit for transit: while a request for a key is in
// flight, further requests for that key queue, and when it returns they go
// out together as one batch_input request. A lone request goes straight out
// and waits for nothing. Vault does the per-request work (HTTP, token check,
// policy) once per batch instead of once per item.
type Batcher struct {
	*Transit
	maxBatch int

	mu     sync.Mutex
	queues map[queueKey]*queue
}

// NewBatcher groups t's encrypt and decrypt calls; maxBatch bounds a batch.
func NewBatcher(t *Transit, maxBatch int) *Batcher {
	return &Batcher{Transit: t, maxBatch: maxBatch, queues: map[queueKey]*queue{}}
}

type queueKey struct {
	op      string // "encrypt" or "decrypt"
	key     string
	version int
}

type queue struct {
	inflight bool
	pending  []*item
}

// item is one caller's request: in is base64 plaintext or a transit
// ciphertext; the answer arrives on done.
type item struct {
	in   string
	done chan result
}

type result struct {
	out string // ciphertext, or base64 plaintext
	err error
}

// Encrypt encrypts plaintext with the given version of key.
func (b *Batcher) Encrypt(ctx context.Context, key string, version int, plaintext []byte) (string, error) {
	return encrypt(ctx, b.submit, key, version, plaintext)
}

// Decrypt decrypts a transit ciphertext with key.
func (b *Batcher) Decrypt(ctx context.Context, key, ciphertext string) ([]byte, error) {
	return decrypt(ctx, b.submit, key, ciphertext)
}

func (b *Batcher) submit(ctx context.Context, op, key string, version int, in string) (string, error) {
	k := queueKey{op, key, version}
	it := &item{in: in, done: make(chan result, 1)}
	b.mu.Lock()
	q := b.queues[k]
	if q == nil {
		q = &queue{}
		b.queues[k] = q
	}
	if q.inflight {
		q.pending = append(q.pending, it)
		b.mu.Unlock()
		select {
		case r := <-it.done:
			return r.out, r.err
		case <-ctx.Done():
			// The batch still runs; its answer for us is dropped.
			return "", ctx.Err()
		}
	}
	q.inflight = true
	b.mu.Unlock()

	out, err := b.one(ctx, k.op, k.key, k.version, in)
	b.next(k, q)
	return out, err
}

// next sends what queued up behind the request that just returned, if
// anything, or marks the key idle.
func (b *Batcher) next(k queueKey, q *queue) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(q.pending) == 0 {
		q.inflight = false
		return
	}
	n := min(len(q.pending), b.maxBatch)
	batch := q.pending[:n:n]
	q.pending = q.pending[n:]
	go func() {
		// Not tied to any one caller's context: the batch serves them all.
		b.batch(context.Background(), k, batch)
		b.next(k, q)
	}()
}

func (b *Batcher) batch(ctx context.Context, k queueKey, items []*item) {
	if len(items) == 1 {
		out, err := b.one(ctx, k.op, k.key, k.version, items[0].in)
		items[0].done <- result{out, err}
		return
	}
	field, outField := fields(k.op)
	input := make([]map[string]any, len(items))
	for i, it := range items {
		input[i] = map[string]any{field: it.in}
		if k.version > 0 {
			input[i]["key_version"] = k.version
		}
	}
	// With partial_failure_response_code, one bad item does not fail the
	// whole request: every item gets its own verdict.
	data, err := b.write(ctx, b.mount+"/"+k.op+"/"+k.key, map[string]any{
		"batch_input": input, "partial_failure_response_code": 200,
	})
	var results []any
	if err == nil {
		var ok bool
		if results, ok = data["batch_results"].([]any); !ok || len(results) != len(items) {
			err = fmt.Errorf("Vault answered a batch of %d with %d results", len(items), len(results))
		}
	}
	if err != nil {
		for _, it := range items {
			it.done <- result{err: err}
		}
		return
	}
	for i, it := range items {
		it.done <- itemResult(results[i], outField)
	}
}

func itemResult(raw any, outField string) result {
	m, ok := raw.(map[string]any)
	if !ok {
		return result{err: errors.New("Vault's batch result is not an object")}
	}
	if msg, _ := m["error"].(string); msg != "" {
		return result{err: &ItemError{Msg: msg}}
	}
	out, ok := m[outField].(string)
	if !ok {
		return result{err: fmt.Errorf("Vault's batch result has no %s", outField)}
	}
	return result{out: out}
}
