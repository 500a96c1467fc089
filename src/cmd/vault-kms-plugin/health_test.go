package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func waitStatus(t *testing.T, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := get(t, url)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q, want %d within %s", url, code, body, want, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape parses /metrics and returns the value of the series name{labels}.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	_, body := get(t, base+"/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// startWithHealth starts the plugin against v with its health server on a
// free port, a 1 s key refresh and the extra settings, and waits until it
// answers; it returns the socket and the health server's base URL.
func startWithHealth(t *testing.T, v *testvault.Server, extra map[string]string) (sock, base string) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "kms.sock")
	addr := fmt.Sprintf("127.0.0.1:%d", testvault.FreePort(t))
	env := map[string]string{"VAULT_KMS_HEALTH_ADDR": addr, "VAULT_KMS_KEY_REFRESH_INTERVAL": "1s"}
	maps.Copy(env, extra)
	startPlugin(t, pluginEnv(v, sock, env))
	waitHealthy(t, sock)
	return sock, "http://" + addr
}

// With Vault stopped, /livez stays up (a restart cannot fix Vault), and
// /readyz follows Status: down at once without a grace, up within one.
func TestLivenessIsNotReadiness(t *testing.T) {
	for _, tc := range []struct {
		grace     string
		wantReady int // /readyz once the plugin has failed to read the key
	}{
		{"0", 503},
		{"1h", 200},
	} {
		t.Run("grace "+tc.grace, func(t *testing.T) {
			v := testvault.Start(t, testvault.Options{Persistent: true})
			v.EnableTransit("transit", "kube")
			sock, base := startWithHealth(t, v, map[string]string{"VAULT_KMS_STATUS_GRACE": tc.grace})
			waitStatus(t, base+"/livez", 200, 5*time.Second)
			waitStatus(t, base+"/readyz", 200, 5*time.Second)
			keyID := status(t, sock).KeyId

			v.Stop()
			failedReads := func() float64 {
				return value(scrape(t, base), "vault_kms_plugin_vault_requests_total", map[string]string{"operation": "read_key", "outcome": "unavailable"})
			}
			deadline := time.Now().Add(20 * time.Second)
			for failedReads() < 1 {
				if time.Now().After(deadline) {
					t.Fatal("the plugin did not try to read the key with Vault down")
				}
				time.Sleep(100 * time.Millisecond)
			}
			waitStatus(t, base+"/readyz", tc.wantReady, 5*time.Second)
			// The ready gauge tells the same as /readyz, for the alerts.
			if got, want := value(scrape(t, base), "vault_kms_plugin_ready", nil), map[int]float64{200: 1, 503: 0}[tc.wantReady]; got != want {
				t.Fatalf("vault_kms_plugin_ready = %v with /readyz %d; want %v", got, tc.wantReady, want)
			}
			if tc.wantReady == 200 {
				if got := status(t, sock).KeyId; got != keyID {
					t.Fatalf("Status within the grace reports key_id %q; want the verified %q", got, keyID)
				}
			}
			if code, body := get(t, base+"/livez"); code != 200 {
				t.Fatalf("/livez with Vault down: %d %s", code, body)
			}
			v.Start()
			waitStatus(t, base+"/readyz", 200, 10*time.Second)
		})
	}
}

// /livez dials the socket's path for every probe, so it fails once the
// path no longer leads to this plugin.
func TestLivezFollowsTheSocketPath(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, sock string)
	}{
		{"unlinked", func(t *testing.T, sock string) {
			if err := os.Remove(sock); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced by another listener", func(t *testing.T, sock string) {
			if err := os.Remove(sock); err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			// Accept and hang up, as something that is not a KMS plugin would.
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock, base := startWithHealth(t, v, nil)
			waitStatus(t, base+"/livez", 200, 5*time.Second)
			tc.break_(t, sock)
			if code, body := get(t, base+"/livez"); code != 503 {
				t.Fatalf("/livez after the socket was %s: %d %q; want 503", tc.name, code, body)
			}
		})
	}
}

func status(t *testing.T, sock string) *kmsapi.StatusResponse {
	t.Helper()
	st, err := dial(t, sock).Status(context.Background(), &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMetricsMoveWithCalls(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	sock, base := startWithHealth(t, v, nil)
	c := dial(t, sock)

	encOK := map[string]string{"api": "v2", "method": "Encrypt", "code": "OK"}
	decBad := map[string]string{"api": "v2", "method": "Decrypt", "code": "InvalidArgument"}
	vaultEnc := map[string]string{"operation": "encrypt", "outcome": "ok"}
	before := scrape(t, base)
	for range 5 {
		if _, err := c.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: []byte("dek")}); err != nil {
			t.Fatal(err)
		}
	}
	c.Decrypt(context.Background(), &kmsapi.DecryptRequest{Ciphertext: []byte("junk")})
	after := scrape(t, base)

	for _, tc := range []struct {
		name   string
		labels map[string]string
		delta  float64
	}{
		{"vault_kms_plugin_grpc_requests_total", encOK, 5},
		{"vault_kms_plugin_grpc_requests_total", decBad, 1},
		{"vault_kms_plugin_grpc_request_duration_seconds", map[string]string{"api": "v2", "method": "Encrypt"}, 5},
		{"vault_kms_plugin_vault_requests_total", vaultEnc, 5},
		{"vault_kms_plugin_vault_request_duration_seconds", map[string]string{"operation": "encrypt"}, 5},
	} {
		if d := value(after, tc.name, tc.labels) - max(0, value(before, tc.name, tc.labels)); d != tc.delta {
			t.Errorf("%s%v moved by %v, want %v", tc.name, tc.labels, d, tc.delta)
		}
	}
	if got := value(after, "vault_kms_plugin_build_info", map[string]string{"version": "dev"}); got != 1 {
		t.Errorf("build_info = %v", got)
	}
	if got := value(after, "vault_kms_plugin_key_version", nil); got != 1 {
		t.Errorf("key_version = %v", got)
	}
	v.Rotate("transit", "kube")
	deadline := time.Now().Add(5 * time.Second)
	for value(scrape(t, base), "vault_kms_plugin_key_version", nil) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("key_version did not reach 2 after a rotation")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// No label may carry a key id or an error string.
	for name, f := range after {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), "/v1/") || strings.Contains(l.GetValue(), " ") {
					t.Errorf("%s has an unbounded label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}
