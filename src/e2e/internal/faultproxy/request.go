package faultproxy

import (
	"bufio"
	"io"
	"net/http"
	"time"
)

// Request is one plain-HTTP request seen on its way to the target.
type Request struct {
	At     time.Time // when its head arrived at the proxy
	Method string
	Path   string
	Body   []byte
}

// readRequests parses the client's byte stream as HTTP/1.1 requests and
// hands each to observe. Anything it cannot parse (TLS, HTTP/2) ends the
// parsing; the rest is drained so that the connection never waits on it.
func readRequests(r io.Reader, observe func(Request)) {
	defer io.Copy(io.Discard, r)
	br := bufio.NewReader(r)
	for {
		if _, err := br.Peek(1); err != nil {
			return
		}
		at := time.Now()
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return
		}
		observe(Request{At: at, Method: req.Method, Path: req.URL.Path, Body: body})
	}
}
