package vault

import (
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// tlsCheckEvery is how often, at most, requests look at the TLS files: a
// few stat calls, so that a change is used within a second of a request.
const tlsCheckEvery = time.Second

// rotatingTransport sends each request over a transport built from the TLS
// files as they are now. A connection's TLS is fixed when it is made, and
// HTTP/2 keeps one connection for ever: so when the files change, new
// requests go to a new transport, which dials with the new files, and the
// old one is left to finish what it has in flight. The next login with a
// client certificate thus presents the new one, and a CA renamed over the
// old one verifies Vault from the next connection on.
type rotatingTransport struct {
	files *tlsFiles
	build func(tlsMaterial) *http.Transport
	log   *slog.Logger

	current   atomic.Pointer[http.Transport]
	nextCheck atomic.Int64 // unix nanoseconds
	mu        sync.Mutex   // one check at a time: files is not safe for more
}

func (r *rotatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.files.watched() {
		r.checkFiles()
	}
	return r.current.Load().RoundTrip(req)
}

// checkFiles swaps in a transport with the new files if they changed,
// at most once per tlsCheckEvery.
func (r *rotatingTransport) checkFiles() {
	now := time.Now()
	next := r.nextCheck.Load()
	if now.UnixNano() < next || !r.nextCheck.CompareAndSwap(next, now.Add(tlsCheckEvery).UnixNano()) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m, changed, err := r.files.refresh()
	if err != nil {
		r.log.Warn("TLS files for Vault changed but cannot be used yet; new connections keep the files read before", "error", err)
		return
	}
	if !changed {
		return
	}
	old := r.current.Swap(r.build(m))
	// Connections busy now close once idle (IdleConnTimeout).
	old.CloseIdleConnections()
	r.log.Info("TLS files for Vault changed; new connections use them",
		"ca_cert", r.files.caFile, "ca_path", r.files.caPath, "client_cert", r.files.certFile)
}
