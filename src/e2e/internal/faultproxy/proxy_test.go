package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// echoServer is a real TCP server on 127.0.0.1 that echoes every line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a line and reads its echo within wait.
func roundTrip(c net.Conn, line string, wait time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return errors.New("echo " + got + " differs from " + line)
	}
	return nil
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func TestFaults(t *testing.T) {
	tests := []struct {
		name string
		// fault is applied to the proxy after one round trip on conn.
		fault func(t *testing.T, p *Proxy)
		// old and fresh check a round trip on the connection opened
		// before the fault and on one dialled after it.
		old, fresh func(err error) bool
		// healed: after Restore, the old connection works again.
		healed bool
	}{
		{
			name:   "none",
			fault:  func(*testing.T, *Proxy) {},
			old:    func(err error) bool { return err == nil },
			fresh:  func(err error) bool { return err == nil },
			healed: true,
		},
		{
			name:   "blackhole holds every byte, then lets them pass",
			fault:  func(_ *testing.T, p *Proxy) { p.Blackhole() },
			old:    isTimeout,
			fresh:  isTimeout,
			healed: true,
		},
		{
			name: "blackhole of the established connections only",
			fault: func(t *testing.T, p *Proxy) {
				if n := p.BlackholeEstablished(); n != 1 {
					t.Errorf("BlackholeEstablished held %d links, want 1", n)
				}
			},
			old:   isTimeout,
			fresh: func(err error) bool { return err == nil },
		},
		{
			name:  "reset",
			fault: func(_ *testing.T, p *Proxy) { p.Reset() },
			old: func(err error) bool {
				return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE)
			},
			fresh: func(err error) bool { return err == nil },
		},
		{
			name: "refused",
			fault: func(t *testing.T, p *Proxy) {
				if err := p.Refuse(); err != nil {
					t.Fatal(err)
				}
			},
			old:    func(err error) bool { return err == nil },
			fresh:  func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) },
			healed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, echoServer(t))
			old := dial(t, p.Addr)
			if err := roundTrip(old, "before", 5*time.Second); err != nil {
				t.Fatalf("round trip before the fault: %v", err)
			}
			tt.fault(t, p)
			oldErr := roundTrip(old, "old", 300*time.Millisecond)
			if !tt.old(oldErr) {
				t.Errorf("open connection during the fault: unexpected result %v", oldErr)
			}
			var freshErr error
			if fresh, err := net.Dial("tcp", p.Addr); err != nil {
				freshErr = err
			} else {
				defer fresh.Close()
				freshErr = roundTrip(fresh, "fresh", 300*time.Millisecond)
			}
			if !tt.fresh(freshErr) {
				t.Errorf("new connection during the fault: unexpected result %v", freshErr)
			}
			if err := p.Restore(); err != nil {
				t.Fatal(err)
			}
			again := dial(t, p.Addr)
			if err := roundTrip(again, "after", 5*time.Second); err != nil {
				t.Errorf("new connection after Restore: %v", err)
			}
			if tt.healed && oldErr == nil {
				if err := roundTrip(old, "old again", 5*time.Second); err != nil {
					t.Errorf("open connection after Restore: %v", err)
				}
			}
			if tt.healed && oldErr != nil {
				// The echo of the line held during the fault arrives first.
				old.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(old)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						t.Fatalf("open connection after Restore: %v", err)
					}
					if line == "old\n" {
						break
					}
				}
			}
		})
	}
}

func TestLatencyDelaysRequestsByAtLeastTheSetting(t *testing.T) {
	p := startProxy(t, echoServer(t))
	const latency = 200 * time.Millisecond
	p.SetLatency(latency)
	c := dial(t, p.Addr)
	for i := range 3 {
		start := time.Now()
		if err := roundTrip(c, "ping", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < latency {
			t.Errorf("round trip %d took %s, less than the added %s", i, d, latency)
		}
	}
	p.SetLatency(0)
	if err := roundTrip(c, "no latency", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestOnRequestSeesEachHTTPRequestWithItsBody(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	p := startProxy(t, strings.TrimPrefix(backend.URL, "http://"))
	var mu sync.Mutex
	var seen []Request
	p.OnRequest(func(r Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r)
	})
	client := &http.Client{Transport: &http.Transport{}} // one kept-alive connection
	t.Cleanup(client.CloseIdleConnections)
	bodies := []string{`{"plaintext":"aGVsbG8="}`, `{"batch_input":[]}`}
	before := time.Now()
	for _, b := range bodies {
		res, err := client.Post("http://"+p.Addr+"/v1/transit/encrypt/k", "application/json", strings.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	// The observer runs beside the forwarding: give it time to catch up.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= len(bodies) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(bodies) {
		t.Fatalf("saw %d requests, want %d", len(seen), len(bodies))
	}
	for i, r := range seen {
		if r.Method != http.MethodPost || r.Path != "/v1/transit/encrypt/k" || string(r.Body) != bodies[i] {
			t.Errorf("request %d = %s %s %q, want POST /v1/transit/encrypt/k %q", i, r.Method, r.Path, r.Body, bodies[i])
		}
		if r.At.Before(before) {
			t.Errorf("request %d arrived at %s, before it was sent", i, r.At)
		}
	}
}

func TestTargetRefusingIsARefusalOrResetAtTheProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := startProxy(t, target)
	// The reset may come before the dial returns, or at the first read.
	c, err := net.Dial("tcp", p.Addr)
	if err == nil {
		defer c.Close()
		err = roundTrip(c, "x", 5*time.Second)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("round trip to a dead target = %v, want a reset", err)
	}
}

// CutAnswers cuts every n-th answer after its headers: the client reads a
// short body and an unexpected EOF; the other answers arrive whole.
func TestCutAnswers(t *testing.T) {
	body := strings.Repeat("x", 1000)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	t.Cleanup(backend.Close)
	p := startProxy(t, strings.TrimPrefix(backend.URL, "http://"))
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	p.CutAnswers(3)
	var whole, cut int
	for range 9 {
		res, err := client.Get("http://" + p.Addr + "/")
		if err != nil {
			t.Fatalf("the status line and headers must pass: %v", err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		switch {
		case err == nil && string(got) == body:
			whole++
		case errors.Is(err, io.ErrUnexpectedEOF) && len(got) > 0 && len(got) < len(body):
			cut++
		default:
			t.Fatalf("read %d bytes, %v: neither whole nor cut mid-body", len(got), err)
		}
	}
	if whole != 6 || cut != 3 || p.CutAnswers(0) != 3 {
		t.Fatalf("%d whole and %d cut answers, want 6 and 3", whole, cut)
	}
}
