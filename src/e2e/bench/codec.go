package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1beta1 "k8s.io/kms/apis/v1beta1"
	kmsapi "k8s.io/kms/apis/v2"
)

// sealed is a ciphertext with what its decryption needs and must return.
type sealed struct {
	ct    []byte
	keyID string // KMS v2 only
	pt    []byte // the plaintext it must decrypt to
}

// codec is one way to encrypt and decrypt a DEK: Vault transit directly,
// or a KMS API on a socket.
type codec interface {
	encrypt(ctx context.Context, pt []byte) (sealed, error)
	decrypt(ctx context.Context, s sealed) ([]byte, error)
}

// encryptCall encrypts the pool's plaintexts in turn.
func encryptCall(c codec, pts [][]byte) call {
	return func(ctx context.Context, i int) error {
		_, err := c.encrypt(ctx, pts[i%len(pts)])
		return err
	}
}

// decryptCall decrypts the pool's ciphertexts in turn and checks each
// plaintext, so that a fast wrong answer counts as an error.
func decryptCall(c codec, pool []sealed) call {
	return func(ctx context.Context, i int) error {
		s := pool[i%len(pool)]
		pt, err := c.decrypt(ctx, s)
		if err == nil && !bytes.Equal(pt, s.pt) {
			err = errors.New("decrypt returned the wrong plaintext")
		}
		return err
	}
}

// direct calls transit/encrypt and transit/decrypt through vault/api.
type direct struct{ c *api.Client }

func (d direct) encrypt(ctx context.Context, pt []byte) (sealed, error) {
	sec, err := d.c.Logical().WriteWithContext(ctx, transitMount+"/encrypt/"+keyName,
		map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)})
	if err != nil {
		return sealed{}, err
	}
	ct, _ := sec.Data["ciphertext"].(string)
	if ct == "" {
		return sealed{}, errors.New("transit encrypt returned no ciphertext")
	}
	return sealed{ct: []byte(ct), pt: pt}, nil
}

func (d direct) decrypt(ctx context.Context, s sealed) ([]byte, error) {
	sec, err := d.c.Logical().WriteWithContext(ctx, transitMount+"/decrypt/"+keyName,
		map[string]any{"ciphertext": string(s.ct)})
	if err != nil {
		return nil, err
	}
	b64, _ := sec.Data["plaintext"].(string)
	return base64.StdEncoding.DecodeString(b64)
}

// kmsV2 calls a KMS v2 server.
type kmsV2 struct {
	c kmsapi.KeyManagementServiceClient
}

func (k kmsV2) encrypt(ctx context.Context, pt []byte) (sealed, error) {
	res, err := k.c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt, Uid: "kms-bench"})
	if err != nil {
		return sealed{}, err
	}
	return sealed{ct: res.Ciphertext, keyID: res.KeyId, pt: pt}, nil
}

func (k kmsV2) decrypt(ctx context.Context, s sealed) ([]byte, error) {
	res, err := k.c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: s.ct, KeyId: s.keyID, Uid: "kms-bench"})
	if err != nil {
		return nil, err
	}
	return res.Plaintext, nil
}

// kmsV1 calls a KMS v1beta1 server.
type kmsV1 struct {
	c v1beta1.KeyManagementServiceClient
}

func (k kmsV1) encrypt(ctx context.Context, pt []byte) (sealed, error) {
	res, err := k.c.Encrypt(ctx, &v1beta1.EncryptRequest{Version: "v1beta1", Plain: pt})
	if err != nil {
		return sealed{}, err
	}
	return sealed{ct: res.Cipher, pt: pt}, nil
}

func (k kmsV1) decrypt(ctx context.Context, s sealed) ([]byte, error) {
	res, err := k.c.Decrypt(ctx, &v1beta1.DecryptRequest{Version: "v1beta1", Cipher: s.ct})
	if err != nil {
		return nil, err
	}
	return res.Plain, nil
}

// dialUnix opens one gRPC connection to a socket, as kube-apiserver keeps
// one per KMS provider.
func dialUnix(sock string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// sealPool encrypts n plaintexts (cycling through pts) with workers
// callers, through the same load runner as the measurements.
func sealPool(ctx context.Context, c codec, pts [][]byte, n, workers int, timeout time.Duration) ([]sealed, error) {
	pool := make([]sealed, n)
	r, err := load{workers: workers, count: n, timeout: timeout}.run(ctx, func(ctx context.Context, i int) error {
		s, err := c.encrypt(ctx, pts[i%len(pts)])
		pool[i] = s
		return err
	})
	if err != nil {
		return nil, err
	}
	if r.errs > 0 {
		return nil, fmt.Errorf("%d of %d encryptions failed, first: %w", r.errs, n, r.firstErr)
	}
	return pool, nil
}
