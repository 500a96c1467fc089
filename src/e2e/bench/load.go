package main

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// call is one request of a measured path; i numbers the calls of one load
// run from 0, so that a path can pick its input from a pool.
type call func(ctx context.Context, i int) error

// load runs workers callers for dur, or for exactly count calls when
// count > 0, and records the latency of every call. Every measured path
// of the benchmark goes through it.
type load struct {
	workers int
	dur     time.Duration
	count   int
	timeout time.Duration // of each call
}

// result of a load run.
type result struct {
	ops      int             // successful calls
	errs     int             // failed calls
	firstErr error           // the first failure, to show
	elapsed  time.Duration   // from the first call's start to the last call's end (summed over rounds)
	lat      []time.Duration // of successful calls, sorted
}

type workerLog struct {
	lat      []time.Duration
	errs     int
	firstErr error
}

func (l load) run(ctx context.Context, f call) (result, error) {
	var next atomic.Int64
	start := time.Now()
	end := start.Add(l.dur)
	more := func(i int64) bool {
		if l.count > 0 {
			return i < int64(l.count)
		}
		return time.Now().Before(end)
	}
	logs := make([]workerLog, l.workers)
	var wg sync.WaitGroup
	for w := range logs {
		wg.Go(func() {
			lg := &logs[w]
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if !more(i) {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, l.timeout)
				t0 := time.Now()
				err := f(cctx, int(i))
				d := time.Since(t0)
				cancel()
				if err != nil {
					if lg.firstErr == nil {
						lg.firstErr = err
					}
					lg.errs++
					continue
				}
				lg.lat = append(lg.lat, d)
			}
		})
	}
	wg.Wait()
	r := result{elapsed: time.Since(start)}
	for _, lg := range logs {
		r.lat = append(r.lat, lg.lat...)
		r.errs += lg.errs
		if r.firstErr == nil {
			r.firstErr = lg.firstErr
		}
	}
	r.finish()
	return r, ctx.Err()
}

// finish counts and sorts the latencies, after a run or a merge of runs.
func (r *result) finish() {
	r.ops = len(r.lat)
	slices.Sort(r.lat)
}

// pct is the q-quantile (0 < q <= 1) of successful calls' latency, by
// nearest rank; 0 when nothing succeeded.
func (r result) pct(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.lat)))) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

// rate is successful calls per second.
func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ops) / r.elapsed.Seconds()
}
