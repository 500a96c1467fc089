package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

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
