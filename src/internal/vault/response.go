package vault

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"

	"github.com/hashicorp/vault/api"
)

// maxRefusalBody bounds what KindOfResponse reads of a refusal. A refused
// batch carries one verdict per item, a few hundred bytes each; a body
// longer than this is classified by its status alone.
const maxRefusalBody = 1 << 20

// KindOfResponse classifies one HTTP exchange with Vault as a
// RoundTripper wrapped around the client's transport sees it, with the
// same answer KindOf gives for the error the client makes of it. Some
// refusals are told apart only by their message (a standby's 400 for a key
// version it has not replicated yet, Vault's 500 for a JSON body over the
// listener's limits), so a refusal's body is read and put back unchanged
// for the client.
func KindOfResponse(res *http.Response, err error) Kind {
	if err != nil {
		// An error here means no answer came; the client hands it to its
		// caller inside a url.Error, so classify it the way KindOf will.
		return KindOf(&url.Error{Op: "round trip", Err: err})
	}
	if res.StatusCode < 300 || res.Body == nil {
		return statusKind(res.StatusCode)
	}
	body, readErr := io.ReadAll(io.LimitReader(res.Body, maxRefusalBody))
	res.Body = replayed{Reader: io.MultiReader(bytes.NewReader(body), res.Body), Closer: res.Body}
	if readErr != nil || len(body) == maxRefusalBody {
		return statusKind(res.StatusCode)
	}
	return KindOf(refusal(res.StatusCode, body))
}

// refusal is the error the client and the transit calls make of a refused
// request's body: vault/api's ResponseError with Vault's messages (the raw
// body when it is not JSON, as vault/api does), or, for a batch in which
// every item failed, the first item's verdict.
func refusal(status int, body []byte) error {
	var answer struct {
		Errors []string `json:"errors"`
		Data   struct {
			BatchResults []struct {
				Error string `json:"error"`
			} `json:"batch_results"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return &api.ResponseError{StatusCode: status, RawError: true, Errors: []string{string(body)}}
	}
	if len(answer.Errors) == 0 {
		for _, item := range answer.Data.BatchResults {
			if item.Error != "" {
				return &ItemError{Msg: item.Error}
			}
		}
	}
	return &api.ResponseError{StatusCode: status, Errors: answer.Errors}
}

// replayed is a response body with what was already read of it in front.
type replayed struct {
	io.Reader
	io.Closer
}
