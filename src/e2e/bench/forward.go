package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // served with -pprof only
	"os"

	kmsapi "k8s.io/kms/apis/v2"
)

// forwarder is about the least a plugin can be: a KMS v2 server that sends
// each Encrypt to transit as one request with net/http and encoding/json,
// with no token lifecycle, key tracking, metrics or logging. It sends the
// plugin's request, key_version included (Vault's audit device hashes it,
// which costs Vault a little), so that Vault's share is the same. It runs
// in its own process, as the plugin does. Beside the floor and the plugin
// it splits the plugin's cost over the floor into what any Go plugin pays
// for being one more process on the call's path and what the plugin's own
// code adds.
type forwarder struct {
	kmsapi.UnimplementedKeyManagementServiceServer
	client *http.Client
	url    string
	token  string
}

func (f *forwarder) Encrypt(ctx context.Context, req *kmsapi.EncryptRequest) (*kmsapi.EncryptResponse, error) {
	// The bench's key is never rotated: version 1 is the latest.
	body, err := json.Marshal(map[string]any{"plaintext": base64.StdEncoding.EncodeToString(req.Plaintext), "key_version": 1})
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("X-Vault-Token", f.token)
	res, err := f.client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return nil, fmt.Errorf("transit encrypt: HTTP %d: %s", res.StatusCode, msg)
	}
	var out struct {
		Data struct {
			Ciphertext string `json:"ciphertext"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Data.Ciphertext == "" {
		return nil, errors.New("transit encrypt returned no ciphertext")
	}
	return &kmsapi.EncryptResponse{Ciphertext: []byte(out.Data.Ciphertext), KeyId: "forward"}, nil
}

// serveForward is the forwarder process: `bench -serve-forward SOCK`,
// with VAULT_ADDR and VAULT_TOKEN in its environment, and VAULT_CACERT
// for Vault over TLS.
func serveForward(sock string) error {
	addr, token := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN")
	if addr == "" || token == "" {
		return errors.New("VAULT_ADDR and VAULT_TOKEN must be set")
	}
	if pp := os.Getenv(pprofAddrEnv); pp != "" {
		go func() { _ = http.ListenAndServe(pp, nil) }() // net/http/pprof, as the plugin's bench build serves
	}
	// net/http's defaults: over TLS they negotiate HTTP/2, as the plugin does.
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 1024 // as many as the highest concurrency
	if ca := os.Getenv("VAULT_CACERT"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return fmt.Errorf("VAULT_CACERT: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("VAULT_CACERT %s holds no PEM certificate", ca)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return serveKMS(sock, &forwarder{
		client: &http.Client{Transport: t},
		url:    addr + "/v1/" + transitMount + "/encrypt/" + keyName,
		token:  token,
	})
}
