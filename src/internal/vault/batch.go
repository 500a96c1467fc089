package vault

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit: while a request for a target (operation, key, version) is
// in flight, further requests for it queue, and when it returns they go out
// together as one batch_input request. A lone request goes straight out and
// waits for nothing. Vault does the per-request work (HTTP, token check,
// policy) once per batch instead of once per item.
//
// Waiting must not cost a caller its deadline. When Vault is slow, a queued
// item that waited for the request in flight and then for its own would
// miss the apiserver's few seconds, so an item whose deadline draws near
// goes out in a batch of its own alongside the one in flight (up to
// maxFlights per target). Items whose callers have gone are dropped before
// sending, and a batch's deadline is its items' latest.

// DefaultBatchMaxItems caps a batch unless Transit.BatchMaxItems says
// otherwise. OpenBao refuses, by default, a request with more than 1,000
// JSON strings, every key and value counting: an encrypt item holds three
// (plaintext, its value, key_version), a decrypt item two. 250 items stay
// well under that, and under Vault's listener defaults.
const DefaultBatchMaxItems = 250

// maxFlights bounds the requests in flight for one target, lone or batch.
const maxFlights = 4

// waitFactor: a queued item stops waiting for the requests in flight once
// its remaining time falls to waitFactor times a round trip. Its own batch
// is larger than a lone request, hence the margin over 1.
const waitFactor = 1.5

// DefaultBatchLinger bounds how long a queued item waits for the requests
// in flight before it goes out in a batch of its own (up to maxFlights). A Vault
// that answers in a few milliseconds lands them first, so nothing changes
// there; behind a slow one (a long link, a struggling node) every caller
// would otherwise wait up to a whole round trip on top of its own, and
// finish fewer calls than it would unbatched. Callers that return together
// call again together, so the items of a linger still share one batch.
const DefaultBatchLinger = 10 * time.Millisecond

// groups holds the queue of each target that has had a request.
type groups struct {
	mu     sync.Mutex
	queues map[target]*queue
}

func newGroups() *groups { return &groups{queues: map[target]*queue{}} }

type queue struct {
	flights  []*flight // requests out for the target, oldest first
	lastTook time.Duration
	pending  []*item

	timer   *time.Timer // launches pending items whose deadline draws near
	timerAt time.Time   // zero: not armed

	// limited is set while Vault refuses the target's requests with 429.
	// Under a rate-limit quota every request counts, not its size: fresh
	// batches sent beside a refused one would spend the next window's
	// budget before its retry, and could starve it past its callers'
	// deadlines. So one request at a time, each as large as the queue.
	limited atomic.Bool
}

// flightLimit is how many requests the target may have out at once.
func (q *queue) flightLimit() int {
	if q.limited.Load() {
		return 1
	}
	return maxFlights
}

// queueKey carries the queue a request is sent for to retrying, which
// records there whether Vault rate-limits it.
type queueKey struct{}

// noteLimit records what an attempt says of the target's rate limit: a 429
// sets it; a first attempt that passes clears it.
func noteLimit(ctx context.Context, attempt int, err error) {
	q, ok := ctx.Value(queueKey{}).(*queue)
	if !ok {
		return
	}
	switch {
	case err == nil && attempt == 0:
		q.limited.Store(false)
	case err != nil && KindOf(err) == LimitExceeded:
		q.limited.Store(true)
	}
}

// flight is one request out to Vault.
type flight struct{ began time.Time }

// item is one caller's request waiting in a queue; its answer arrives on
// done. ctx is the caller's: once it is done, nobody waits for the answer.
type item struct {
	ctx    context.Context
	in     string
	queued time.Time
	done   chan result
}

type result struct {
	out string // ciphertext, or base64 plaintext
	err error
}

// sendGrouped sends r at once if nothing is in flight for its target, and
// otherwise queues it for a batch.
func (t *Transit) sendGrouped(ctx context.Context, r request) (string, error) {
	g := t.groups
	g.mu.Lock()
	q := g.queues[r.target]
	if q == nil {
		q = &queue{}
		g.queues[r.target] = q
	}
	if len(q.flights) == 0 {
		f := q.takeOff()
		g.mu.Unlock()
		out, err := t.sendOne(context.WithValue(ctx, queueKey{}, q), r)
		t.landed(r.target, q, f)
		return out, err
	}
	it := &item{ctx: ctx, in: r.in, queued: time.Now(), done: make(chan result, 1)}
	q.pending = append(q.pending, it)
	t.wakeAtLocked(r.target, q, q.sendBy(it, t.batchLinger()))
	g.mu.Unlock()
	select {
	case res := <-it.done:
		return res.out, res.err
	case <-ctx.Done():
		// A batch not yet sent leaves this item out; one in flight still
		// runs, and its answer for us is dropped.
		return "", ctx.Err()
	}
}

func (q *queue) takeOff() *flight {
	f := &flight{began: time.Now()}
	q.flights = append(q.flights, f)
	return f
}

// landed records that f returned and sends what queued up meanwhile.
func (t *Transit) landed(tg target, q *queue, f *flight) {
	g := t.groups
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, other := range q.flights {
		if other == f {
			q.flights = append(q.flights[:i], q.flights[i+1:]...)
			break
		}
	}
	q.lastTook = time.Since(f.began)
	t.launchLocked(tg, q)
}

// launchLocked sends the pending items whose callers still wait, in
// batches of at most the batch limit, while fewer than maxFlights are out.
func (t *Transit) launchLocked(tg target, q *queue) {
	for len(q.flights) < q.flightLimit() {
		batch := q.takeLive(t.batchMaxItems())
		if len(batch) == 0 {
			return
		}
		f := q.takeOff()
		go func() {
			t.sendBatch(tg, q, batch)
			t.landed(tg, q, f)
		}()
	}
}

// takeLive removes up to n items whose callers still wait from the front
// of the queue, and drops the ones whose callers have gone.
func (q *queue) takeLive(n int) []*item {
	var live []*item
	i := 0
	for ; i < len(q.pending) && len(live) < n; i++ {
		if it := q.pending[i]; it.ctx.Err() == nil {
			live = append(live, it)
		}
	}
	q.pending = q.pending[i:]
	return live
}

// sendBy is when it must leave: once it has lingered, or earlier so as to
// come back before its caller's deadline, assuming its round trip takes as
// long as the latest one, or as long as the oldest request in flight has
// taken so far, whichever is longer.
func (q *queue) sendBy(it *item, linger time.Duration) time.Time {
	lingered := it.queued.Add(linger)
	deadline, ok := it.ctx.Deadline()
	if !ok {
		return lingered
	}
	by := deadline.Add(-time.Duration(waitFactor * float64(q.lastTook)))
	if len(q.flights) > 0 {
		// Solves deadline - by = waitFactor * (by - began).
		began := q.flights[0].began
		if elapsedBound := began.Add(time.Duration(float64(deadline.Sub(began)) / (1 + waitFactor))); elapsedBound.Before(by) {
			by = elapsedBound
		}
	}
	if lingered.Before(by) {
		return lingered
	}
	return by
}

// wakeAtLocked launches the pending items at by, or now if by has passed.
func (t *Transit) wakeAtLocked(tg target, q *queue, by time.Time) {
	wait := time.Until(by)
	if wait <= 0 {
		t.launchLocked(tg, q)
		return
	}
	if !q.timerAt.IsZero() && !by.Before(q.timerAt) {
		return
	}
	q.timerAt = by
	if q.timer == nil {
		q.timer = time.AfterFunc(wait, func() { t.wake(tg, q) })
		return
	}
	q.timer.Reset(wait)
}

// wake runs when the earliest pending item's time to leave may have come.
// Requests may have landed and launched since, so look again.
func (t *Transit) wake(tg target, q *queue) {
	g := t.groups
	g.mu.Lock()
	defer g.mu.Unlock()
	q.timerAt = time.Time{}
	var earliest time.Time
	for _, it := range q.pending {
		if by := q.sendBy(it, t.batchLinger()); it.ctx.Err() == nil && (earliest.IsZero() || by.Before(earliest)) {
			earliest = by
		}
	}
	if !earliest.IsZero() {
		t.wakeAtLocked(tg, q, earliest)
	}
}

// errCallersGone ends a batch whose callers all gave up before it went out.
var errCallersGone = errors.New("every caller of the batch has gone")

// sendBatch sends items as one request and gives each its own answer. A
// batch Vault refuses as too large is split in two, each half sent on its
// own, and later batches are kept to the size that passed.
func (t *Transit) sendBatch(tg target, q *queue, items []*item) {
	if len(items) == 1 {
		it := items[0]
		out, err := t.sendOne(context.WithValue(it.ctx, queueKey{}, q), request{tg, it.in})
		it.done <- result{out, err}
		return
	}
	// Not tied to any one caller's context: the batch serves them all, for
	// as long as the last of them waits.
	ctx, cancel := context.WithCancel(context.Background())
	if latest, ok := latestDeadline(items); ok {
		ctx, cancel = context.WithDeadline(context.Background(), latest)
	}
	defer cancel()
	ctx = context.WithValue(ctx, queueKey{}, q)
	field, outField := fields(tg.op)
	live := items
	var results []any
	err := t.retrying(ctx, func(ctx context.Context) error {
		if live = stillWaiting(live); len(live) == 0 {
			return errCallersGone
		}
		input := make([]map[string]any, len(live))
		for i, it := range live {
			input[i] = map[string]any{field: it.in}
			if tg.version > 0 {
				input[i]["key_version"] = tg.version
			}
		}
		// With partial_failure_response_code, one bad item does not fail
		// the whole request: every item gets its own verdict.
		data, err := t.write(ctx, t.mount+"/"+tg.op+"/"+tg.key, map[string]any{
			"batch_input": input, "partial_failure_response_code": 200,
		})
		if err != nil {
			return err
		}
		var ok bool
		if results, ok = data["batch_results"].([]any); !ok || len(results) != len(live) {
			return fmt.Errorf("Vault answered a batch of %d with %d results", len(live), len(results))
		}
		return nil
	})
	switch {
	case err == nil:
		for i, it := range live {
			it.done <- itemResult(results[i], outField)
		}
	case batchTooLarge(err) && len(live) > 1:
		t.shrinkBatches(len(live) / 2)
		half := len(live) / 2
		var wg sync.WaitGroup
		wg.Go(func() { t.sendBatch(tg, q, live[:half]) })
		wg.Go(func() { t.sendBatch(tg, q, live[half:]) })
		wg.Wait()
	default:
		for _, it := range live {
			it.done <- result{err: err}
		}
	}
}

// latestDeadline is the latest of the items' deadlines; ok is false if any
// item has none.
func latestDeadline(items []*item) (latest time.Time, ok bool) {
	for _, it := range items {
		d, has := it.ctx.Deadline()
		if !has {
			return time.Time{}, false
		}
		if d.After(latest) {
			latest = d
		}
	}
	return latest, true
}

// stillWaiting keeps the items whose callers still wait for an answer.
func stillWaiting(items []*item) []*item {
	live := items[:0:0]
	for _, it := range items {
		if it.ctx.Err() == nil {
			live = append(live, it)
		}
	}
	return live
}

// batchMaxItems is the most items one batch may carry now.
func (t *Transit) batchLinger() time.Duration {
	if t.BatchLinger > 0 {
		return t.BatchLinger
	}
	return DefaultBatchLinger
}

func (t *Transit) batchMaxItems() int {
	n := t.BatchMaxItems
	if n <= 0 {
		n = DefaultBatchMaxItems
	}
	if learned := int(t.learnedMaxItems.Load()); learned > 0 && learned < n {
		n = learned
	}
	return n
}

// shrinkBatches keeps later batches to n items: Vault's limits do not
// change while the plugin runs, so a size refused once is refused again.
func (t *Transit) shrinkBatches(n int) {
	for {
		cur := t.learnedMaxItems.Load()
		if cur > 0 && cur <= int64(n) {
			return
		}
		if t.learnedMaxItems.CompareAndSwap(cur, int64(max(n, 1))) {
			return
		}
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
