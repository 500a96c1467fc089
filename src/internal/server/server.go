package server

import (
	"context"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	v1beta1 "k8s.io/kms/apis/v1beta1"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
)

// Core is the KMS logic that both APIs serve; the plugin serves a
// *kms.Service.
type Core interface {
	Status(ctx context.Context) (*kms.StatusResponse, error)
	Encrypt(ctx context.Context, uid string, plaintext []byte) (*kms.EncryptResponse, error)
	Decrypt(ctx context.Context, uid string, req *kms.DecryptRequest) ([]byte, error)
}

// streamWorkers is how many calls are served by long-lived goroutines.
const streamWorkers = 16

// New returns a gRPC server answering KMS v2 and v1beta1 from core; version
// is the plugin's, for v1's handshake. Each call passes through outer (such
// as metrics), then a log line, then the mapping of errors to gRPC codes:
// outer interceptors see the final code.
func New(core Core, version string, log *slog.Logger, outer ...grpc.UnaryServerInterceptor) *grpc.Server {
	interceptors := append(outer[:len(outer):len(outer)], logging(log), errorCodes())
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(interceptors...),
		// A handler's stack grows deep (vault/api, net/http, JSON) and a
		// fresh goroutine per call regrows it every time: profiles of make
		// bench at concurrency 1 showed stack copying on every call.
		// Workers keep their grown stacks; when all are busy, gRPC starts a
		// goroutine as before.
		grpc.NumStreamWorkers(streamWorkers))
	// The library's adapter is used only for its v2 translation; it never
	// listens (address and timeout are for its own ListenAndServe).
	kmsapi.RegisterKeyManagementServiceServer(gs, service.NewGRPCService("", 0, v2{core}))
	v1beta1.RegisterKeyManagementServiceServer(gs, &v1{core: core, version: version})
	return gs
}

// Serve serves on l until ctx ends, then drains in-flight calls for at most
// drain before closing them. The socket file is removed on return.
func Serve(ctx context.Context, gs *grpc.Server, l net.Listener, drain time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		gs.Stop()
	}
	return nil
}
