package metrics_test

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/metrics"
)

// A call is in flight while its handler runs, and is not once it returned,
// whatever its outcome.
func TestInFlightCountsCallsUntilAnswered(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code string
	}{
		{"answered", nil, "OK"},
		{"refused", status.Error(codes.ResourceExhausted, "too many calls"), "ResourceExhausted"},
		{"failed", errors.New("boom"), "Unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New("test")
			inFlight := func() float64 { return series(t, m.Registry, "grpc_requests_in_flight")[0].value }
			var during float64
			_, err := m.UnaryInterceptor()(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/v2.KeyManagementService/Encrypt"},
				func(context.Context, any) (any, error) { during = inFlight(); return nil, tc.err })
			if !errors.Is(err, tc.err) {
				t.Fatalf("the interceptor returned %v, want the handler's %v", err, tc.err)
			}
			if during != 1 || inFlight() != 0 {
				t.Errorf("in flight: %v during the call and %v after, want 1 and 0", during, inFlight())
			}
			calls := series(t, m.Registry, "grpc_requests_total")
			if len(calls) != 1 || calls[0].labels["code"] != tc.code || calls[0].labels["method"] != "Encrypt" || calls[0].labels["api"] != "v2" {
				t.Errorf("grpc_requests_total = %v, want one call {api=v2, method=Encrypt, code=%s}", calls, tc.code)
			}
		})
	}
}
