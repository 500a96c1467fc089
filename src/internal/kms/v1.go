package kms

import (
	"context"

	"k8s.io/kms/apis/v1beta1"
	"k8s.io/kms/pkg/service"
)

// V1 serves the legacy v1beta1 API (clusters before 1.29, or with the
// KMSv1 gate) over the same service.
type V1 struct {
	v1beta1.UnsafeKeyManagementServiceServer
	svc     service.Service
	version string
}

var _ v1beta1.KeyManagementServiceServer = (*V1)(nil)

// NewV1 adapts svc to the v1beta1 API; version is the plugin's version.
func NewV1(svc service.Service, version string) *V1 { return &V1{svc: svc, version: version} }

// Version answers the apiserver's handshake.
func (v *V1) Version(context.Context, *v1beta1.VersionRequest) (*v1beta1.VersionResponse, error) {
	return &v1beta1.VersionResponse{Version: "v1beta1", RuntimeName: "vault", RuntimeVersion: v.version}, nil
}

// Encrypt encrypts a DEK.
func (v *V1) Encrypt(ctx context.Context, req *v1beta1.EncryptRequest) (*v1beta1.EncryptResponse, error) {
	res, err := v.svc.Encrypt(ctx, "", req.Plain)
	if err != nil {
		return nil, err
	}
	return &v1beta1.EncryptResponse{Cipher: res.Ciphertext}, nil
}

// Decrypt decrypts a DEK.
func (v *V1) Decrypt(ctx context.Context, req *v1beta1.DecryptRequest) (*v1beta1.DecryptResponse, error) {
	pt, err := v.svc.Decrypt(ctx, "", &service.DecryptRequest{Ciphertext: req.Cipher})
	if err != nil {
		return nil, err
	}
	return &v1beta1.DecryptResponse{Plain: pt}, nil
}
