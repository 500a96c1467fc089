package server

import (
	"context"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
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
// is the plugin's, for v1's handshake. At most maxInflight Encrypt and
// Decrypt calls are served at once (admission). Each call passes through
// outer (such as metrics), then a log line, then the mapping of errors to
// gRPC codes, then admission: outer interceptors see the final code, and a
// refusal is logged and counted.
func New(core Core, version string, maxInflight int, log *slog.Logger, outer ...grpc.UnaryServerInterceptor) *grpc.Server {
	adm := newAdmission(maxInflight)
	interceptors := append(outer[:len(outer):len(outer)], logging(log), errorCodes(), adm.interceptor())
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(interceptors...),
		grpc.MaxConcurrentStreams(adm.streamsPerConn()),
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

// errorCodes turns errors into gRPC statuses with the code grpcCode gives.
func errorCodes() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err == nil {
			return resp, nil
		}
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Error(grpcCode(err), err.Error())
	}
}

// logging logs each call's method, code and duration; never its payload.
// Successful calls are logged at debug so that the request path stays quiet,
// and cost nothing more than a level check when debug is off.
func logging(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		switch {
		case err != nil:
			st := status.Convert(err)
			log.Warn("kms call failed", "method", info.FullMethod, "code", st.Code().String(),
				"duration", time.Since(start), "error", st.Message())
		case log.Enabled(ctx, slog.LevelDebug):
			log.Debug("kms call", "method", info.FullMethod, "code", "OK", "duration", time.Since(start))
		}
		return resp, err
	}
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
