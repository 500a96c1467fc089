package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/health"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/logging"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/metrics"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/server"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/vault"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/version"
)

// serve wires the plugin top-down: the configuration, then Vault (client,
// token session, transit), then the KMS core on transit, then the gRPC
// server on the socket; health and metrics sit beside them.
func serve(ctx context.Context, cfg *config.Config, logw io.Writer) error {
	log := logging.New(logw, cfg.LogFormat, cfg.LogLevel)
	for _, w := range cfg.Warnings() {
		log.Warn("setting ignored: " + w)
	}
	if os.Getenv("GOGC") == "" {
		// The heap is small (tens of MiB) and short-lived garbage per call
		// dominates: collecting half as often cut CPU per call under load
		// by about a fifth in make bench, for a few MiB. GOGC overrides.
		debug.SetGCPercent(200)
	}
	m := metrics.New(version.Version)

	client, err := vault.NewClient(cfg.VaultTimeout, 256, m.Transport, vault.WithLog(log))
	if err != nil {
		return err
	}
	log.Info("starting vault-kms-plugin", "version", version.Version, "vault_addr", client.Address(),
		"namespace", client.Namespace(), "transit_path", cfg.TransitPath, "keys", cfg.KeyNames,
		"auth_method", cfg.AuthMethod, "listen", cfg.Listen)
	if insecure, _ := strconv.ParseBool(os.Getenv("VAULT_SKIP_VERIFY")); insecure {
		log.Warn("VAULT_SKIP_VERIFY is set: Vault's TLS certificate is NOT verified; anyone on the path can read every DEK. Set VAULT_CACERT instead.")
	}
	token := &tokenExpiry{Observer: m}
	session := vault.NewSession(client, loginFor(cfg, client.Token()), cfg.VaultTimeout, log, token)
	transit := vault.NewTransit(session, cfg.TransitPath, cfg.VaultTimeout, cfg.GroupCommit)
	transit.BatchMaxItems = cfg.BatchMaxItems

	svc := kms.New(transit, cfg.KeyNames, cfg.KeyRefreshInterval, log,
		kms.WithStatusGrace(cfg.StatusGrace), kms.WithTokenExpiry(token.At), kms.WithKeyIDObserver(m.KeyID))
	if cfg.StatusGrace == 0 {
		log.Warn("VAULT_KMS_STATUS_GRACE=0: Status fails as soon as Vault does not answer, and with it every apiserver's /readyz; a load balancer must check /readyz?exclude=kms-providers or /livez")
	}
	m.WatchKey(svc.KeyVersion)
	m.WatchReady(svc.Health)

	l, err := server.Listen(cfg.SocketPath(), cfg.SocketFileMode(), cfg.SocketGID())
	if err != nil {
		return err
	}
	gs := server.New(svc, version.Version, cfg.MaxInflight, log, m.UnaryInterceptor())

	bg, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { session.Run(bg) })
	wg.Go(func() { svc.Run(bg) })
	if cfg.HealthAddr != "" {
		if err := serveHealth(bg, &wg, cfg, svc, m, log); err != nil {
			return err
		}
	}

	log.Info("serving KMS v2 and v1beta1", "socket", cfg.SocketPath())
	if err := server.Serve(ctx, gs, l, cfg.ShutdownTimeout); err != nil {
		return fmt.Errorf("serve on %s: %w", cfg.SocketPath(), err)
	}
	log.Info("stopped")
	return nil
}

// serveHealth serves /livez, /readyz and /metrics on VAULT_KMS_HEALTH_ADDR
// in wg until ctx ends.
func serveHealth(ctx context.Context, wg *sync.WaitGroup, cfg *config.Config, svc *kms.Service, m *metrics.Metrics, log *slog.Logger) error {
	h, err := health.Handler(cfg.SocketPath(), svc.Health, m.Registry)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", cfg.HealthAddr)
	if err != nil {
		return fmt.Errorf("listen on VAULT_KMS_HEALTH_ADDR=%s: %w (another pod on the host network may hold the port; pick another)", cfg.HealthAddr, err)
	}
	wg.Go(func() {
		if err := health.Serve(ctx, hl, h); err != nil {
			log.Error("health server stopped; the kubelet's probes will fail", "addr", cfg.HealthAddr, "error", err)
		}
	})
	log.Info("serving /livez, /readyz and /metrics", "addr", "http://"+cfg.HealthAddr)
	return nil
}

// tokenExpiry passes the session's token events on to the metrics and
// keeps the expiry, so that the core can tell a token that lives through an
// outage from a dead one.
type tokenExpiry struct {
	vault.Observer
	at atomic.Pointer[time.Time]
}

func (t *tokenExpiry) TokenExpiry(at time.Time) {
	t.at.Store(&at)
	t.Observer.TokenExpiry(at)
}

// At is the token's expiry; zero before a login and for tokens that never
// expire.
func (t *tokenExpiry) At() time.Time {
	if p := t.at.Load(); p != nil {
		return *p
	}
	return time.Time{}
}

func loginFor(cfg *config.Config, envToken string) vault.Login {
	switch cfg.AuthMethod {
	case config.AuthKubernetes:
		return vault.Kubernetes{Role: cfg.AuthRole, Mount: cfg.AuthMount, JWTFile: cfg.SATokenFile}
	case config.AuthJWT:
		return vault.JWT{Role: cfg.AuthRole, Mount: cfg.AuthMount, JWTFile: cfg.SATokenFile}
	case config.AuthAppRole:
		return vault.AppRole{RoleID: cfg.AppRoleRoleID, Mount: cfg.AuthMount, SecretIDFile: cfg.AppRoleSecretIDFile}
	case config.AuthCert:
		return vault.Cert{Role: cfg.AuthRole, Mount: cfg.AuthMount}
	}
	if cfg.TokenFile != "" {
		return vault.TokenFile{Path: cfg.TokenFile}
	}
	return vault.StaticToken{Token: envToken}
}
