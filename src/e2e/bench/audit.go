package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"time"
)

// auditLog counts the requests Vault writes to its file audit device. It
// reads only what was appended since its last read, and reset empties the
// file between measurements so that it does not grow without bound (Vault
// appends with O_APPEND, so it goes on writing at the new end).
type auditLog struct {
	path    string
	off     int64  // bytes read so far
	partial []byte // an incomplete last line
	n       int64  // request lines seen so far
}

var requestMark = []byte(`"type":"request"`)

// requests is the number of requests Vault has audited so far.
func (a *auditLog) requests() (int64, error) {
	f, err := os.Open(a.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(a.off, io.SeekStart); err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	for {
		k, err := f.Read(buf)
		a.off += int64(k)
		data := append(a.partial, buf[:k]...)
		for {
			line, rest, ok := bytes.Cut(data, []byte{'\n'})
			if !ok {
				break
			}
			if bytes.Contains(line, requestMark) {
				a.n++
			}
			data = rest
		}
		a.partial = bytes.Clone(data)
		if err == io.EOF {
			return a.n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// reset counts what is left and empties the file. Call it only while
// nothing talks to Vault.
func (a *auditLog) reset() error {
	if _, err := a.requests(); err != nil {
		return err
	}
	if err := os.Truncate(a.path, 0); err != nil {
		return err
	}
	a.off, a.partial = 0, nil
	return nil
}

// settle waits until no new request has been audited for quiet (at most
// limit), and returns the count then.
func (a *auditLog) settle(ctx context.Context, quiet, limit time.Duration) (int64, error) {
	deadline := time.Now().Add(limit)
	last, err := a.requests()
	if err != nil {
		return 0, err
	}
	since := time.Now()
	for time.Since(since) < quiet && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		n, err := a.requests()
		if err != nil {
			return 0, err
		}
		if n != last {
			last, since = n, time.Now()
		}
	}
	return last, nil
}
