// Package health serves /livez, /readyz and /metrics over HTTP.
package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1beta1 "k8s.io/kms/apis/v1beta1"
)

// Handler answers the probes.
//
// /livez asks the plugin's own socket for its v1 Version, which never
// touches Vault: a Vault outage must not make the kubelet restart a plugin
// that a restart cannot fix. Each probe dials the socket's path afresh: a
// connection kept open would go on answering after the file was unlinked
// or replaced, when the apiserver, which dials the path, no longer reaches
// this plugin. /readyz reports ready(), which is computed from state the
// background loops keep, so a probe costs no Vault request.
func Handler(socket string, ready func() error, reg *prometheus.Registry) (http.Handler, error) {
	target := "unix://" + socket
	// NewClient connects lazily: this checks the target's form only.
	conn, err := dial(target)
	if err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	conn.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := askVersion(ctx, target); err != nil {
			http.Error(w, "socket does not answer: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux, nil
}

func dial(target string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return conn, nil
}

// askVersion asks target for its v1 Version on a connection of its own.
func askVersion(ctx context.Context, target string) error {
	conn, err := dial(target)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = v1beta1.NewKeyManagementServiceClient(conn).Version(ctx, &v1beta1.VersionRequest{Version: "v1beta1"})
	return err
}

// Serve serves h on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
