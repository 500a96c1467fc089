package faults

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1beta1 "k8s.io/kms/apis/v1beta1"
	kmsapi "k8s.io/kms/apis/v2"
)

// kube-apiserver's view of a KMS plugin: each call has a 3 s deadline
// (its default KMS timeout) and Status is polled every 10 s. The suite
// polls every second instead, to measure an outage to the second; that
// costs the plugin nothing (Status answers from its key snapshot).
const (
	callTimeout = 3 * time.Second
	statusEvery = time.Second
)

// outcome is one call: when it ran and its gRPC code (OK on success).
type outcome struct {
	start, end time.Time
	code       codes.Code
	msg        string
	// outlived: the caller's deadline had passed when the call returned,
	// whatever its code (a plugin's own timeout is DeadlineExceeded too).
	outlived bool
}

// recorder keeps the outcome of every call and every Status of a case.
type recorder struct {
	mu     sync.Mutex
	calls  []outcome
	status []outcome
	sealed []sealed   // what Encrypt calls produced, to decrypt at the end
	late   *lateItems // if not nil, told each call's items and deadline
}

// sealed is a plugin ciphertext and the plaintext it must decrypt to.
type sealed struct {
	ct, pt []byte
}

// add records a call made under ctx (nil for one not made).
func (r *recorder) add(list *[]outcome, ctx context.Context, start time.Time, err error) {
	o := outcome{start: start, end: time.Now(), code: status.Code(err)}
	o.outlived = ctx != nil && ctx.Err() != nil
	if err != nil {
		o.msg = status.Convert(err).Message()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	*list = append(*list, o)
}

// pollStatus calls Status every statusEvery until ctx ends.
func (r *recorder) pollStatus(ctx context.Context, p *plugin) {
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	for {
		cctx, cancel := callCtx()
		start := time.Now()
		res, err := p.v2.Status(cctx, &kmsapi.StatusRequest{})
		if err == nil && res.Healthz != "ok" {
			err = status.Errorf(codes.Unknown, "healthz %q", res.Healthz)
		}
		r.add(&r.status, cctx, start, err)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// encryptV2 is one KMS v2 Encrypt of a fresh DEK; what it returns is kept
// to be decrypted at the end.
func (r *recorder) encryptV2(ctx context.Context, p *plugin) error {
	pt := dek()
	r.expect(ctx, pt)
	res, err := p.v2.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt, Uid: "faults"})
	if err == nil {
		r.mu.Lock()
		r.sealed = append(r.sealed, sealed{ct: res.Ciphertext, pt: pt})
		r.mu.Unlock()
	}
	return err
}

// expect tells the late-item counter, if any, that pt is sent under
// ctx's deadline.
func (r *recorder) expect(ctx context.Context, pt []byte) {
	if deadline, ok := ctx.Deadline(); ok && r.late != nil {
		r.late.expect(base64.StdEncoding.EncodeToString(pt), deadline)
	}
}

// drive runs workers callers of f, each call with its own deadline, until
// ctx ends, and records every call.
func (r *recorder) drive(ctx context.Context, workers int, f func(ctx context.Context) error) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				cctx, cancel := callCtx()
				start := time.Now()
				err := f(cctx)
				r.add(&r.calls, cctx, start, err)
				cancel()
			}
		})
	}
	wg.Wait()
}

// storm sends n KMS v1 Decrypts of cts with workers callers, as
// kube-apiserver does when it reads every Secret after a restart, and
// checks each plaintext. Calls not started within limit count as failed
// (code Canceled), so that a storm that crawls still ends.
func (r *recorder) storm(p *plugin, cts []sealed, n, workers int, limit time.Duration) {
	var next atomic.Int64
	stop := time.Now().Add(limit)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				start := time.Now()
				if start.After(stop) {
					r.add(&r.calls, nil, start, status.Error(codes.Canceled, "not sent: the storm's time limit passed"))
					continue
				}
				s := cts[i%len(cts)]
				cctx, cancel := callCtx()
				if deadline, ok := cctx.Deadline(); ok && r.late != nil {
					_, transit, _ := strings.Cut(string(s.ct), ":")
					r.late.expect(transit, deadline)
				}
				res, err := p.v1.Decrypt(cctx, &v1beta1.DecryptRequest{Version: "v1beta1", Cipher: s.ct})
				if err == nil && string(res.Plain) != string(s.pt) {
					err = status.Error(codes.DataLoss, "decrypt returned the wrong plaintext")
				}
				r.add(&r.calls, cctx, start, err)
				cancel()
			}
		})
	}
	wg.Wait()
}

// dek is a random 32-byte key, as kube-apiserver's DEKs are.
func dek() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// tally is what a list of outcomes amounts to.
type tally struct {
	total, failed int
	codes         map[codes.Code]int
	firstMsg      map[codes.Code]string
	lastFailure   time.Time
	longest       time.Duration // of the calls
	outlived      int           // calls that returned after their caller's deadline
}

func count(list []outcome) tally {
	t := tally{total: len(list), codes: map[codes.Code]int{}, firstMsg: map[codes.Code]string{}}
	for _, o := range list {
		t.longest = max(t.longest, o.end.Sub(o.start))
		if o.outlived {
			t.outlived++
		}
		if o.code == codes.OK {
			continue
		}
		t.failed++
		t.codes[o.code]++
		if _, ok := t.firstMsg[o.code]; !ok {
			t.firstMsg[o.code] = o.msg
		}
		if o.end.After(t.lastFailure) {
			t.lastFailure = o.end
		}
	}
	return t
}

// codeList is "Unavailable×3, DeadlineExceeded×1", most frequent first.
func (t tally) codeList() string {
	if t.failed == 0 {
		return "none"
	}
	type kv struct {
		c codes.Code
		n int
	}
	var l []kv
	for c, n := range t.codes {
		l = append(l, kv{c, n})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n > l[j].n || l[i].n == l[j].n && l[i].c < l[j].c })
	var parts []string
	for _, e := range l {
		parts = append(parts, fmt.Sprintf("%s×%d", e.c, e.n))
	}
	return strings.Join(parts, ", ")
}

// longestDown is the longest stretch during which Status was not ok: from
// the start of a failing poll to the start of the next poll that succeeded
// (or the end of the last one), and the time the first failure started.
func longestDown(polls []outcome) (longest time.Duration, firstFail time.Time) {
	polls = slices.Clone(polls)
	slices.SortFunc(polls, func(a, b outcome) int { return a.start.Compare(b.start) })
	var downSince time.Time
	for _, o := range polls {
		switch {
		case o.code != codes.OK && downSince.IsZero():
			downSince = o.start
			if firstFail.IsZero() {
				firstFail = o.start
			}
		case o.code == codes.OK && !downSince.IsZero():
			longest = max(longest, o.start.Sub(downSince))
			downSince = time.Time{}
		}
	}
	if !downSince.IsZero() {
		longest = max(longest, polls[len(polls)-1].end.Sub(downSince))
	}
	return longest, firstFail
}

// failedOutside is the number of failed calls that do not overlap the
// window from..to: a call in flight when the fault began counts as inside.
func failedOutside(list []outcome, from, to time.Time) int {
	n := 0
	for _, o := range list {
		if o.code != codes.OK && (o.end.Before(from) || o.start.After(to)) {
			n++
		}
	}
	return n
}
