package vault

import (
	"errors"
	"io"
	"net/http"
)

// answerCutError is a failure to read an answer whose status line had
// arrived: Vault, or the path to it, went away mid-answer (a restart or a
// failover closing the connection, an HTTP/2 stream reset). Whether Vault
// served the request is unknown, and transit calls may be sent again, so it
// is Unavailable, like a request that got no answer at all. Without the
// mark, net/http's "unexpected EOF" or a stream error would read as an
// answer the plugin cannot parse, and the call would fail at once.
type answerCutError struct{ err error }

func (e *answerCutError) Error() string { return "Vault's answer ended early: " + e.err.Error() }
func (e *answerCutError) Unwrap() error { return e.err }

// markCutAnswers marks every error met while reading an answer's body as
// an answerCutError. It wraps the whole transport, so that the body it sees
// is the one the client reads.
type markCutAnswers struct{ next http.RoundTripper }

func (m markCutAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := m.next.RoundTrip(req)
	if err == nil && res.Body != nil {
		res.Body = answerBody{res.Body}
	}
	return res, err
}

type answerBody struct{ io.ReadCloser }

func (b answerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = &answerCutError{err}
	}
	return n, err
}
