package vault_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

// answerCutter forwards to a real Vault and cuts its next answers short:
// status line, headers and half the body, then the connection closes
// (HTTP/1.1) or the stream is reset (HTTP/2), as when Vault restarts or
// fails over mid-answer. A real Vault cannot be asked to do that on cue.
type answerCutter struct {
	toCut, cut atomic.Int64
}

func (c *answerCutter) start(t *testing.T, target string, http2 bool) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.toCut.Add(-1) < 0 {
			rp.ServeHTTP(w, r)
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI, out.URL.Scheme, out.URL.Host = "", u.Scheme, u.Host
		res, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for k, vs := range res.Header {
			w.Header()[k] = vs
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		c.cut.Add(1)
		panic(http.ErrAbortHandler)
	}))
	srv.EnableHTTP2 = http2
	if http2 {
		srv.StartTLS()
		ca := filepath.Join(t.TempDir(), "ca.pem")
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("VAULT_CACERT", ca)
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv.URL
}

// An answer cut off after its status line is Vault going away mid-answer:
// the call is retried within its deadline, not failed as an answer the
// plugin cannot read.
func TestCutAnswersAreRetried(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	for _, tc := range []struct {
		name        string
		http2       bool
		groupCommit bool
	}{
		{"HTTP/1.1 connection closed mid-answer, one call a request", false, false},
		{"HTTP/2 stream reset mid-answer, group commit", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const cuts = 3
			cutter := &answerCutter{}
			addr := cutter.start(t, v.Addr, tc.http2)
			tr := transitWrapped(t, addr, v.RootToken, tc.groupCommit, 2*time.Second, nil)
			dek := []byte("a DEK sent through cut answers")

			cutter.toCut.Store(cuts)
			ct, err := tr.Encrypt(t.Context(), "kube", 0, dek)
			if err != nil {
				t.Fatalf("encrypt after %d cut answers: %v", cutter.cut.Load(), err)
			}
			cutter.toCut.Store(cuts)
			pt, err := tr.Decrypt(t.Context(), "kube", ct)
			if err != nil {
				t.Fatalf("decrypt after %d cut answers: %v", cutter.cut.Load(), err)
			}
			if !bytes.Equal(pt, dek) {
				t.Fatalf("decrypt = %q, want %q", pt, dek)
			}
			if got := cutter.cut.Load(); got != 2*cuts {
				t.Fatalf("%d answers cut, want %d: the test did not cut what it meant to", got, 2*cuts)
			}
		})
	}
}

// The mark does not change what a cut answer says: the cause stays
// readable, and the kind is Unavailable.
func TestCutAnswerKind(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	cutter := &answerCutter{}
	addr := cutter.start(t, v.Addr, false)
	cutter.toCut.Store(1 << 30)
	tr := transitWrapped(t, addr, v.RootToken, false, 2*time.Second, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := tr.Encrypt(ctx, "kube", 0, []byte("dek"))
	if kind := vault.KindOf(err); kind != vault.Unavailable || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("every answer cut: %v (kind %v); want Unavailable, with unexpected EOF as its cause", err, kind)
	}
}
