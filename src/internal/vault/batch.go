package vault

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Group commit: while a request for a target (operation, key, version) is
// in flight, further requests for it queue, and when it returns they go out
// together as one batch_input request. A lone request goes straight out and
// waits for nothing. Vault does the per-request work (HTTP, token check,
// policy) once per batch instead of once per item.

// maxBatch bounds one batch: large enough for an apiserver's start-up
// storm, small enough that one batch stays well inside the Vault timeout.
const maxBatch = 512

// groups holds the queue of each target that has had a request.
type groups struct {
	mu     sync.Mutex
	queues map[target]*queue
}

func newGroups() *groups { return &groups{queues: map[target]*queue{}} }

type queue struct {
	inflight bool
	pending  []*item
}

// item is one caller's request waiting in a queue; its answer arrives on
// done.
type item struct {
	in   string
	done chan result
}

type result struct {
	out string // ciphertext, or base64 plaintext
	err error
}

// sendGrouped sends r at once if nothing is in flight for its target, and
// otherwise queues it for the next batch.
func (t *Transit) sendGrouped(ctx context.Context, r request) (string, error) {
	g := t.groups
	it := &item{in: r.in, done: make(chan result, 1)}
	g.mu.Lock()
	q := g.queues[r.target]
	if q == nil {
		q = &queue{}
		g.queues[r.target] = q
	}
	if q.inflight {
		q.pending = append(q.pending, it)
		g.mu.Unlock()
		select {
		case res := <-it.done:
			return res.out, res.err
		case <-ctx.Done():
			// The batch still runs; its answer for us is dropped.
			return "", ctx.Err()
		}
	}
	q.inflight = true
	g.mu.Unlock()

	out, err := t.sendOne(ctx, r)
	t.sendQueued(r.target, q)
	return out, err
}

// sendQueued sends what queued up behind the request that just returned,
// if anything, or marks the target idle.
func (t *Transit) sendQueued(tg target, q *queue) {
	g := t.groups
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(q.pending) == 0 {
		q.inflight = false
		return
	}
	n := min(len(q.pending), maxBatch)
	batch := q.pending[:n:n]
	q.pending = q.pending[n:]
	go func() {
		// Not tied to any one caller's context: the batch serves them all.
		t.sendBatch(context.Background(), tg, batch)
		t.sendQueued(tg, q)
	}()
}

// sendBatch sends items as one request and gives each its own answer.
func (t *Transit) sendBatch(ctx context.Context, tg target, items []*item) {
	if len(items) == 1 {
		out, err := t.sendOne(ctx, request{tg, items[0].in})
		items[0].done <- result{out, err}
		return
	}
	field, outField := fields(tg.op)
	input := make([]map[string]any, len(items))
	for i, it := range items {
		input[i] = map[string]any{field: it.in}
		if tg.version > 0 {
			input[i]["key_version"] = tg.version
		}
	}
	// With partial_failure_response_code, one bad item does not fail the
	// whole request: every item gets its own verdict.
	data, err := t.write(ctx, t.mount+"/"+tg.op+"/"+tg.key, map[string]any{
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
