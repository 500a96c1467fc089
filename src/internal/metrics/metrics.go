// Package metrics exports the plugin's Prometheus metrics. Labels are
// bounded: API, method, gRPC code, Vault operation and outcome, and a hash
// of the one key_id in use; never key ids themselves, uids or error
// strings.
package metrics

import (
	"context"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
)

const namespace = "vault_kms_plugin"

// latencyBuckets start near 1 ms: a cached Status answers in microseconds,
// a Vault round trip in a few milliseconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Metrics holds the plugin's collectors in their own registry.
type Metrics struct {
	Registry *prometheus.Registry

	grpcRequests  *prometheus.CounterVec
	grpcLatency   *prometheus.HistogramVec
	grpcInflight  prometheus.Gauge
	vaultRequests *prometheus.CounterVec
	vaultLatency  *prometheus.HistogramVec
	logins        *prometheus.CounterVec
	renewals      *prometheus.CounterVec
	tokenExpiry   prometheus.Gauge
	keyID         keyIDInfo
}

// New registers every metric, plus Go runtime and process metrics.
func New(version string) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		grpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "grpc_requests_total",
			Help: "KMS gRPC calls answered, by API version, method and gRPC code.",
		}, []string{"api", "method", "code"}),
		grpcLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "grpc_request_duration_seconds",
			Help: "Time to answer a KMS gRPC call, by API version and method.", Buckets: latencyBuckets,
		}, []string{"api", "method"}),
		grpcInflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "grpc_requests_in_flight",
			Help: "KMS gRPC calls received and not yet answered, those waiting under VAULT_KMS_MAX_INFLIGHT included.",
		}),
		vaultRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "vault_requests_total",
			Help: "HTTP requests to Vault (a batch counts once), by operation and outcome.",
		}, []string{"operation", "outcome"}),
		vaultLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "vault_request_duration_seconds",
			Help: "Latency of HTTP requests to Vault, by operation.", Buckets: latencyBuckets,
		}, []string{"operation"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "vault_logins_total",
			Help: "Logins to Vault, by outcome.",
		}, []string{"outcome"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "vault_token_renewals_total",
			Help: "Renewals of the Vault token, by outcome.",
		}, []string{"outcome"}),
		tokenExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "vault_token_expiry_timestamp_seconds",
			Help: "When the current Vault token expires (Unix time); 0 for a token that never expires.",
		}),
	}
	m.keyID.series = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "key_id_info",
		Help: "Always 1; key_id_hash is the first 12 hex digits of the SHA-256 of the key_id Status reports. One series, none before the key was first read.",
	}, []string{"key_id_hash"})
	// Every outcome is exported from the start, at 0, so that the first
	// failed login raises increase() in an alert instead of creating a
	// series it cannot compare with anything.
	for k := vault.OK; k <= vault.Internal; k++ {
		m.logins.WithLabelValues(k.String())
		m.renewals.WithLabelValues(k.String())
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels give the plugin's version and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	r.MustRegister(m.grpcRequests, m.grpcLatency, m.grpcInflight, m.vaultRequests, m.vaultLatency, m.logins, m.renewals, m.tokenExpiry, m.keyID.series, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// WatchKey exports the key version in use and the age of the snapshot,
// read at scrape time from f.
func (m *Metrics) WatchKey(f func() (version int, age time.Duration)) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "key_version",
			Help: "Version of the transit key that encrypts new data (0 before Vault was first read).",
		}, func() float64 { v, _ := f(); return float64(v) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "key_snapshot_age_seconds",
			Help: "Time since the key's version was last read from Vault.",
		}, func() float64 { _, age := f(); return age.Seconds() }),
	)
}

// WatchReady exports whether the plugin is ready, read at scrape time from
// ready: the verdict /readyz and Status give (nil: ready), which costs no
// Vault call.
func (m *Metrics) WatchReady(ready func() error) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "ready",
		Help: "1 while Status vouches for the key_id (as /readyz), 0 while it fails.",
	}, func() float64 {
		if ready() != nil {
			return 0
		}
		return 1
	}))
}

// UnaryInterceptor counts and times KMS calls.
func (m *Metrics) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		m.grpcInflight.Inc()
		defer m.grpcInflight.Dec()
		start := time.Now()
		resp, err := h(ctx, req)
		api, method := splitMethod(info.FullMethod)
		m.grpcRequests.WithLabelValues(api, method, status.Code(err).String()).Inc()
		m.grpcLatency.WithLabelValues(api, method).Observe(time.Since(start).Seconds())
		return resp, err
	}
}

// splitMethod turns "/v2.KeyManagementService/Encrypt" into "v2", "Encrypt".
func splitMethod(full string) (api, method string) {
	svc, method, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	api, _, _ = strings.Cut(svc, ".")
	return api, method
}

// Login, Renew and TokenExpiry make Metrics a vault.Observer.
func (m *Metrics) Login(err error) { m.logins.WithLabelValues(outcome(err)).Inc() }
func (m *Metrics) Renew(err error) { m.renewals.WithLabelValues(outcome(err)).Inc() }
func (m *Metrics) TokenExpiry(t time.Time) {
	if t.IsZero() {
		m.tokenExpiry.Set(0)
		return
	}
	m.tokenExpiry.Set(float64(t.Unix()))
}

// outcome is a bounded label for an error: its Vault kind ("ok",
// "unavailable", "permission_denied", ...).
func outcome(err error) string { return vault.KindOf(err).String() }
