// Package faultproxy is a TCP proxy on 127.0.0.1 that injects the network
// faults the fault suite needs between the plugin and Vault: added latency,
// a blackhole (bytes held, no reset) of every connection or of the
// established ones only, resets, refused connections, and plain-HTTP
// answers cut off mid-body. It can also
// report the plain-HTTP requests it forwards, with the time each arrived,
// so that a test can tell what was sent after its caller gave up.
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from Addr to a target.
type Proxy struct {
	Addr   string // host:port clients connect to
	target string

	mu        sync.Mutex
	changed   *sync.Cond // broadcast whenever a link may proceed
	ln        net.Listener
	links     map[*link]struct{}
	latency   time.Duration
	stallAll  bool // every link, the new ones too, holds its bytes
	cutEvery  int  // cut every cutEvery-th plain-HTTP answer (0: none)
	answers   int  // plain-HTTP answers seen while cutting
	cut       int  // answers cut
	closed    bool
	onRequest func(Request)
	wg        sync.WaitGroup
}

// link is one proxied connection.
type link struct {
	client, upstream net.Conn
	// dead: blackholed for good, as a connection whose path vanished
	// (a NAT entry dropped) never comes back.
	dead bool
	gone bool // reset or closed: its pumps stop
}

// New listens on 127.0.0.1 (a free port) and forwards to target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy to %s: listen: %w", target, err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, links: map[*link]struct{}{}}
	p.changed = sync.NewCond(&p.mu)
	p.serve(ln)
	return p, nil
}

// OnRequest has f called for every plain-HTTP request sent through the
// proxy, as it arrives (before any added latency). f must be quick: the
// connection waits for it. Set it before traffic starts.
func (p *Proxy) OnRequest(f func(Request)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onRequest = f
}

// SetLatency delays every chunk sent towards the target by d (0 removes
// it), for the links open now and later.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
	p.changed.Broadcast()
}

// Blackhole holds every byte in both directions, on open and new links
// alike (new connections are accepted, as a kernel does, but nothing
// passes), until Restore. Nothing is reset; held bytes flow on Restore,
// as after a healed partition.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stallAll = true
}

// BlackholeEstablished holds the bytes of every link open now, for good;
// new connections work. A client must notice and abandon the dead ones.
func (p *Proxy) BlackholeEstablished() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		l.dead = true
	}
	return len(p.links)
}

// CutAnswers cuts every n-th plain-HTTP answer from the target (0 stops
// cutting): the status line, the headers and half of the body that came
// with them pass, then the link closes with a FIN, as when a server dies
// mid-answer. It returns how many answers were cut so far.
func (p *Proxy) CutAnswers(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutEvery, p.answers = n, 0
	return p.cut
}

// cutAt is how much of c to pass before cutting the link, or -1 to pass
// it all. An answer is cut only in the chunk that starts it.
func (p *Proxy) cutAt(c []byte) int {
	if !bytes.HasPrefix(c, []byte("HTTP/1.")) {
		return -1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cutEvery == 0 {
		return -1
	}
	p.answers++
	if p.answers%p.cutEvery != 0 {
		return -1
	}
	p.cut++
	headEnd := bytes.Index(c, []byte("\r\n\r\n"))
	if headEnd < 0 {
		return len(c) / 2
	}
	headEnd += 4
	return headEnd + (len(c)-headEnd)/2
}

// Reset closes every open link with a TCP reset on both sides.
func (p *Proxy) Reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.links)
	for l := range p.links {
		l.abort()
		delete(p.links, l)
	}
	p.changed.Broadcast()
	return n
}

// Refuse closes the listener, so that new connections are refused, until
// Restore opens it again on the same port. Open links are left alone.
func (p *Proxy) Refuse() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return nil
	}
	err := p.ln.Close()
	p.ln = nil
	return err
}

// Restore ends Blackhole and Refuse (the links BlackholeEstablished
// killed stay dead).
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stallAll = false
	p.changed.Broadcast()
	if p.ln != nil || p.closed {
		return nil
	}
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		return fmt.Errorf("fault proxy: listen again on %s: %w", p.Addr, err)
	}
	p.serveLocked(ln)
	return nil
}

// Open is the number of links open now.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops listening, resets every link and waits for its goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	var err error
	if p.ln != nil {
		err = p.ln.Close()
		p.ln = nil
	}
	for l := range p.links {
		l.abort()
		delete(p.links, l)
	}
	p.changed.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serveLocked(ln)
}

func (p *Proxy) serveLocked(ln net.Listener) {
	p.ln = ln
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Refuse or Close
			}
			p.wg.Go(func() { p.handle(c) })
		}
	})
}

func (p *Proxy) handle(client net.Conn) {
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		// The target refuses: so does the proxy, with a reset.
		abortConn(client)
		return
	}
	l := &link{client: client, upstream: upstream}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.abort()
		return
	}
	p.links[l] = struct{}{}
	observe := p.onRequest
	p.mu.Unlock()

	var toTarget io.Reader = client
	var parsed chan struct{}
	if observe != nil {
		pr, pw := io.Pipe()
		toTarget = io.TeeReader(client, pw)
		parsed = make(chan struct{})
		go func() {
			defer close(parsed)
			readRequests(pr, observe)
		}()
		defer func() {
			pw.Close()
			<-parsed
		}()
	}
	var pumps sync.WaitGroup
	pumps.Go(func() { p.pump(l, toTarget, upstream, true) })
	pumps.Go(func() { p.pump(l, upstream, client, false) })
	pumps.Wait()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// chunk is bytes read from one side, and when.
type chunk struct {
	data []byte
	at   time.Time
}

// pump copies src to dst, chunk by chunk, each after the latency (towards
// the target) and only while the link may pass bytes. When either side
// ends, both are closed.
func (p *Proxy) pump(l *link, src io.Reader, dst net.Conn, toTarget bool) {
	chunks := make(chan chunk, 64)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{data: buf[:n], at: time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		l.close()
		for range chunks { // let the reader finish
		}
	}()
	for c := range chunks {
		if !p.wait(l, c.at, toTarget) {
			return
		}
		if !toTarget {
			if n := p.cutAt(c.data); n >= 0 {
				_, _ = dst.Write(c.data[:n])
				return // the deferred close ends the link with a FIN
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}

// wait blocks until c may be written: its latency served and the link
// not held. It returns false once the proxy closes.
func (p *Proxy) wait(l *link, at time.Time, toTarget bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.closed || l.gone {
			return false
		}
		due := at
		if toTarget {
			due = at.Add(p.latency)
		}
		if l.dead || p.stallAll {
			p.changed.Wait()
			continue
		}
		if d := time.Until(due); d > 0 {
			p.mu.Unlock()
			time.Sleep(min(d, 50*time.Millisecond))
			p.mu.Lock()
			continue
		}
		return true
	}
}

func (l *link) close() {
	l.client.Close()
	l.upstream.Close()
}

func (l *link) abort() {
	l.gone = true
	abortConn(l.client)
	abortConn(l.upstream)
}

// abortConn closes c with a reset rather than a FIN.
func abortConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
