package server

import (
	"context"

	"k8s.io/kms/pkg/service"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
)

// v2 presents the core as k8s.io/kms's Service, so that the library's own
// adapter translates KMS v2 calls.
type v2 struct{ core Core }

var _ service.Service = v2{}

func (a v2) Status(ctx context.Context) (*service.StatusResponse, error) {
	st, err := a.core.Status(ctx)
	if err != nil {
		return nil, err
	}
	return &service.StatusResponse{Version: st.Version, Healthz: st.Healthz, KeyID: st.KeyID}, nil
}

func (a v2) Encrypt(ctx context.Context, uid string, plaintext []byte) (*service.EncryptResponse, error) {
	res, err := a.core.Encrypt(ctx, uid, plaintext)
	if err != nil {
		return nil, err
	}
	return &service.EncryptResponse{Ciphertext: res.Ciphertext, KeyID: res.KeyID}, nil
}

func (a v2) Decrypt(ctx context.Context, uid string, req *service.DecryptRequest) ([]byte, error) {
	return a.core.Decrypt(ctx, uid, &kms.DecryptRequest{Ciphertext: req.Ciphertext, KeyID: req.KeyID})
}
