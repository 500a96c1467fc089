package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
)

// Key is what the plugin needs to know about a transit key.
type Key struct {
	Name                 string
	Type                 string
	LatestVersion        int
	LatestCreated        time.Time
	MinDecryptionVersion int
	DeletionAllowed      bool
	SupportsEncryption   bool
	SupportsDecryption   bool
}

// Transit calls one transit mount through a Session. Encrypt and decrypt
// requests go to Vault one by one, or grouped (batch.go) when group commit
// is on.
type Transit struct {
	s       *Session
	mount   string
	timeout time.Duration
	groups  *groups // nil: every request goes out alone

	// BatchMaxItems caps the items of one batch request (0:
	// DefaultBatchMaxItems). Set it before the first call.
	BatchMaxItems int
	// BatchLinger bounds how long a queued request waits for the requests
	// in flight before it goes out in a batch of its own (0:
	// DefaultBatchLinger). Set it before the first call.
	BatchLinger time.Duration
	// learnedMaxItems is the batch size that Vault's request limits let
	// through, once Vault refused a larger one (0: none refused yet).
	learnedMaxItems atomic.Int64
}

// NewTransit returns transit calls on mount, each bounded by timeout. With
// groupCommit, concurrent encrypts or decrypts for one key go to Vault
// together as one batch request.
func NewTransit(s *Session, mount string, timeout time.Duration, groupCommit bool) *Transit {
	t := &Transit{s: s, mount: mount, timeout: timeout}
	if groupCommit {
		t.groups = newGroups()
	}
	return t
}

// AuthErr is nil while the session's token is usable.
func (t *Transit) AuthErr() error { return t.s.Err() }

// Encrypt encrypts plaintext with the given version of key.
func (t *Transit) Encrypt(ctx context.Context, key string, version int, plaintext []byte) (string, error) {
	ct, err := t.send(ctx, request{target{"encrypt", key, version}, base64.StdEncoding.EncodeToString(plaintext)})
	if err != nil {
		return "", fmt.Errorf("encrypt with key %q version %d: %w", key, version, err)
	}
	return ct, nil
}

// Decrypt decrypts a transit ciphertext ("vault:vN:...") with key.
func (t *Transit) Decrypt(ctx context.Context, key string, ciphertext string) ([]byte, error) {
	pt, err := t.send(ctx, request{target{"decrypt", key, 0}, ciphertext})
	if err != nil {
		return nil, fmt.Errorf("decrypt with key %q: %w", key, err)
	}
	b, err := base64.StdEncoding.DecodeString(pt)
	if err != nil {
		return nil, fmt.Errorf("decrypt with key %q: Vault's plaintext is not base64", key)
	}
	return b, nil
}

// target is what a request acts on: one operation with one key version.
type target struct {
	op      string // "encrypt" or "decrypt"
	key     string
	version int // 0: the key's latest (and always for decrypt)
}

// request is one encrypt or decrypt: in is base64 plaintext or a transit
// ciphertext, and so is the answer.
type request struct {
	target
	in string
}

// fields names the input and output of a transit operation.
func fields(op string) (in, out string) {
	if op == "decrypt" {
		return "ciphertext", "plaintext"
	}
	return "plaintext", "ciphertext"
}

// send sends r grouped with others for the same target when group commit
// is on, alone otherwise.
func (t *Transit) send(ctx context.Context, r request) (string, error) {
	if t.groups != nil {
		return t.sendGrouped(ctx, r)
	}
	return t.sendOne(ctx, r)
}

// sendOne sends r as a request of its own, retried while the caller waits
// (retry.go).
func (t *Transit) sendOne(ctx context.Context, r request) (string, error) {
	inField, outField := fields(r.op)
	body := map[string]any{inField: r.in}
	if r.version > 0 {
		body["key_version"] = r.version
	}
	var out string
	err := t.retrying(ctx, func(ctx context.Context) error {
		data, err := t.write(ctx, t.mount+"/"+r.op+"/"+r.key, body)
		if err != nil {
			return err
		}
		var ok bool
		if out, ok = data[outField].(string); !ok || out == "" {
			return fmt.Errorf("Vault's answer has no %s", outField)
		}
		return nil
	})
	return out, err
}

// write sends one write to Vault.
func (t *Transit) write(ctx context.Context, path string, body map[string]any) (map[string]any, error) {
	var data map[string]any
	err := t.do(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, t.timeout)
		defer cancel()
		c := t.s.client
		req := c.NewRequest(http.MethodPut, "/v1/"+path)
		if err := req.SetJSONBody(body); err != nil {
			return fmt.Errorf("encode the request to %s: %w", path, err)
		}
		// Logical().Write drops the body of a refused request, and a batch
		// whose every item failed is refused with a 400 whose body still
		// holds each item's verdict.
		res, err := c.RawRequestWithContext(ctx, req) //nolint:staticcheck // see above
		if res != nil {
			defer res.Body.Close()
		}
		if err != nil {
			if sec := batchVerdicts(res); sec != nil {
				data = sec.Data
				return nil
			}
			return err
		}
		sec, err := api.ParseSecret(res.Body)
		if err != nil {
			return fmt.Errorf("read Vault's answer from %s: %w", path, err)
		}
		if sec == nil || sec.Data == nil {
			return errors.New("Vault returned no data")
		}
		data = sec.Data
		return nil
	})
	return data, err
}

// batchVerdicts is the answer of a batch request that Vault refused with a
// 400 because no item passed, or nil for any other refusal.
func batchVerdicts(res *api.Response) *api.Secret {
	if res == nil || res.StatusCode != http.StatusBadRequest {
		return nil
	}
	sec, err := api.ParseSecret(res.Body)
	if err != nil || sec == nil || sec.Data["batch_results"] == nil {
		return nil
	}
	return sec
}

// do runs fn, and when Vault refuses the token and a lookup proves it dead
// (denied.go), has the session log in again (once, shared with concurrent
// callers) and runs fn one more time. A 403 for a live token is a policy
// denial, answered without a login.
func (t *Transit) do(ctx context.Context, fn func(context.Context) error) error {
	used := t.s.current()
	err := fn(ctx)
	if KindOf(err) != Denied {
		return err
	}
	if err := t.s.afterDenied(ctx, used, err); err != nil {
		return err
	}
	return fn(ctx)
}

// ReadKey reads key's metadata.
func (t *Transit) ReadKey(ctx context.Context, key string) (*Key, error) {
	var data map[string]any
	err := t.do(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, t.timeout)
		defer cancel()
		sec, err := t.s.client.Logical().ReadWithContext(ctx, t.mount+"/keys/"+key)
		if err != nil {
			return err
		}
		if sec == nil || sec.Data == nil {
			return ErrKeyNotFound
		}
		data = sec.Data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read key %q on mount %q: %w", key, t.mount, err)
	}
	k, err := parseKey(key, data)
	if err != nil {
		return nil, fmt.Errorf("read key %q on mount %q: %w", key, t.mount, err)
	}
	return k, nil
}

func parseKey(name string, d map[string]any) (*Key, error) {
	k := &Key{Name: name}
	k.Type, _ = d["type"].(string)
	k.DeletionAllowed, _ = d["deletion_allowed"].(bool)
	k.SupportsEncryption, _ = d["supports_encryption"].(bool)
	k.SupportsDecryption, _ = d["supports_decryption"].(bool)
	var err error
	if k.LatestVersion, err = toInt(d["latest_version"]); err != nil || k.LatestVersion < 1 {
		return nil, fmt.Errorf("Vault's answer has no valid latest_version")
	}
	k.MinDecryptionVersion, _ = toInt(d["min_decryption_version"])
	versions, ok := d["keys"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("Vault's answer has no key versions")
	}
	v, ok := versions[strconv.Itoa(k.LatestVersion)]
	if !ok {
		return nil, fmt.Errorf("Vault's answer lacks latest version %d", k.LatestVersion)
	}
	// Symmetric keys give the creation time as Unix seconds, asymmetric ones
	// as an object with creation_time.
	switch v := v.(type) {
	case json.Number:
		sec, err := v.Int64()
		if err != nil {
			return nil, fmt.Errorf("version %d has a bad creation time", k.LatestVersion)
		}
		k.LatestCreated = time.Unix(sec, 0).UTC()
	case map[string]any:
		ts, _ := v["creation_time"].(string)
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return nil, fmt.Errorf("version %d has a bad creation time", k.LatestVersion)
		}
		k.LatestCreated = t.UTC()
	default:
		return nil, fmt.Errorf("version %d has a bad creation time", k.LatestVersion)
	}
	return k, nil
}

func toInt(v any) (int, error) {
	switch v := v.(type) {
	case json.Number:
		i, err := v.Int64()
		return int(i), err
	case float64:
		return int(v), nil
	case int:
		return v, nil
	}
	return 0, fmt.Errorf("not a number: %T", v)
}

// Scope names where the keys live: the namespace and the mount, as
// configured. It leaves out the Vault cluster's id: a DR secondary promoted
// to primary, and replicas, serve the same keys under other ids, and a
// key_id must not change while the key does not (see kms/keyid.go).
func (t *Transit) Scope(context.Context) (string, error) {
	return strings.Trim(t.s.client.Namespace(), "/") + "|" + t.mount, nil
}
