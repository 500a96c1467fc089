package server

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc"
	v1beta1 "k8s.io/kms/apis/v1beta1"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"
)

// New returns a gRPC server answering KMS v2 from svc and KMS v1 from v1.
func New(svc service.Service, v1 v1beta1.KeyManagementServiceServer, interceptors ...grpc.UnaryServerInterceptor) *grpc.Server {
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(interceptors...))
	// The library's adapter is used only for its v2 translation; it never
	// listens (address and timeout are for its own ListenAndServe).
	kmsapi.RegisterKeyManagementServiceServer(gs, service.NewGRPCService("", 0, svc))
	v1beta1.RegisterKeyManagementServiceServer(gs, v1)
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
