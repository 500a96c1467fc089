package server

import (
	"context"

	"k8s.io/kms/apis/v1beta1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
)

// v1 serves the legacy v1beta1 API (clusters before 1.29, or with the
// KMSv1 gate) from the same core.
type v1 struct {
	v1beta1.UnsafeKeyManagementServiceServer
	core    Core
	version string // the plugin's
}

var _ v1beta1.KeyManagementServiceServer = (*v1)(nil)

// Version answers the apiserver's handshake.
func (v *v1) Version(context.Context, *v1beta1.VersionRequest) (*v1beta1.VersionResponse, error) {
	return &v1beta1.VersionResponse{Version: "v1beta1", RuntimeName: "vault", RuntimeVersion: v.version}, nil
}

// Encrypt encrypts a DEK.
func (v *v1) Encrypt(ctx context.Context, req *v1beta1.EncryptRequest) (*v1beta1.EncryptResponse, error) {
	res, err := v.core.Encrypt(ctx, "", req.Plain)
	if err != nil {
		return nil, err
	}
	return &v1beta1.EncryptResponse{Cipher: res.Ciphertext}, nil
}

// Decrypt decrypts a DEK.
func (v *v1) Decrypt(ctx context.Context, req *v1beta1.DecryptRequest) (*v1beta1.DecryptResponse, error) {
	pt, err := v.core.Decrypt(ctx, "", &kms.DecryptRequest{Ciphertext: req.Cipher})
	if err != nil {
		return nil, err
	}
	return &v1beta1.DecryptResponse{Plain: pt}, nil
}
