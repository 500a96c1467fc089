package server_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	v1beta1 "k8s.io/kms/apis/v1beta1"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/kms"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/server"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

type plugin struct {
	v2  kmsapi.KeyManagementServiceClient
	v1  v1beta1.KeyManagementServiceClient
	svc *kms.Service
}

// startPlugin serves the plugin on a real socket against v, with the root
// token, the way the binary wires it.
func startPlugin(t testing.TB, v *testvault.Server, groupCommit bool, keys ...string) *plugin {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	transit := v.Transit(t, groupCommit)
	svc := kms.New(transit, keys, time.Hour, log)
	sock := filepath.Join(t.TempDir(), "kms.sock")
	l, err := server.Listen(sock, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	gs := server.New(svc, "test", server.DefaultMaxInflight, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { server.Serve(ctx, gs, l, time.Second); close(done) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); cancel(); <-done })
	if err := svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Status answers once the session's first login is done too.
	for deadline := time.Now().Add(10 * time.Second); svc.Health() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin not healthy: %v", svc.Health())
		}
	}
	return &plugin{v2: kmsapi.NewKeyManagementServiceClient(conn), v1: v1beta1.NewKeyManagementServiceClient(conn), svc: svc}
}

func (p *plugin) status(t *testing.T) *kmsapi.StatusResponse {
	t.Helper()
	st, err := p.v2.Status(context.Background(), &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (p *plugin) encrypt(t *testing.T, pt string) *kmsapi.EncryptResponse {
	t.Helper()
	res, err := p.v2.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: []byte(pt), Uid: "uid-1"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (p *plugin) decrypt(t *testing.T, res *kmsapi.EncryptResponse) string {
	t.Helper()
	out, err := p.v2.Decrypt(context.Background(), &kmsapi.DecryptRequest{Ciphertext: res.Ciphertext, KeyId: res.KeyId, Uid: "uid-2"})
	if err != nil {
		t.Fatal(err)
	}
	return string(out.Plaintext)
}

func TestRoundTripV2AndV1(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	p := startPlugin(t, v, false, "kube")

	st := p.status(t)
	if st.Version != "v2" || st.Healthz != "ok" || st.KeyId == "" {
		t.Fatalf("status %+v", st)
	}
	res := p.encrypt(t, "32-byte-data-encryption-key-xxxx")
	if res.KeyId != st.KeyId || len(res.Ciphertext) > 1024 || strings.Contains(string(res.Ciphertext), "32-byte") {
		t.Fatalf("encrypt %+v", res)
	}
	if got := p.decrypt(t, res); got != "32-byte-data-encryption-key-xxxx" {
		t.Fatalf("decrypt %q", got)
	}

	ver, err := p.v1.Version(context.Background(), &v1beta1.VersionRequest{Version: "v1beta1"})
	if err != nil || ver.Version != "v1beta1" || ver.RuntimeName != "vault" {
		t.Fatalf("v1 version %+v %v", ver, err)
	}
	enc, err := p.v1.Encrypt(context.Background(), &v1beta1.EncryptRequest{Version: "v1beta1", Plain: []byte("v1-dek")})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := p.v1.Decrypt(context.Background(), &v1beta1.DecryptRequest{Version: "v1beta1", Cipher: enc.Cipher})
	if err != nil || string(dec.Plain) != "v1-dek" {
		t.Fatalf("v1 decrypt %q %v", dec.GetPlain(), err)
	}
	// Both APIs share one ciphertext format.
	if got := p.decrypt(t, &kmsapi.EncryptResponse{Ciphertext: enc.Cipher}); got != "v1-dek" {
		t.Fatalf("v2 decrypt of v1 ciphertext %q", got)
	}
}

func TestBadInputCodes(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	p := startPlugin(t, v, false, "kube")
	good := p.encrypt(t, "dek")
	for _, tc := range []struct {
		name string
		ct   []byte
		want codes.Code
	}{
		{"garbage", []byte("not a ciphertext"), codes.InvalidArgument},
		{"truncated", good.Ciphertext[:len(good.Ciphertext)-8], codes.InvalidArgument},
		{"tampered", append([]byte(string(good.Ciphertext[:len(good.Ciphertext)-6])), "AAAA=="...), codes.InvalidArgument},
		{"oversized", make([]byte, 4096), codes.InvalidArgument},
		{"other key", []byte("elsewhere:vault:v1:QUJDREVG"), codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.v2.Decrypt(context.Background(), &kmsapi.DecryptRequest{Ciphertext: tc.ct, KeyId: good.KeyId})
			if status.Code(err) != tc.want {
				t.Fatalf("decrypt: %v; want %v", err, tc.want)
			}
		})
	}
	if _, err := p.v2.Encrypt(context.Background(), &kmsapi.EncryptRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("encrypt of nothing: %v", err)
	}
}

func TestRotationChangesKeyIDAndOldDataStillReads(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	p := startPlugin(t, v, false, "kube")
	before := p.status(t)
	old := p.encrypt(t, "before rotation")

	if got := v.Rotate("transit", "kube"); got != 2 {
		t.Fatalf("rotated to version %d", got)
	}
	// Until the plugin looks again it keeps reporting and using version 1.
	if again := p.encrypt(t, "x"); again.KeyId != before.KeyId {
		t.Fatalf("key id moved before a refresh: %q", again.KeyId)
	}
	if err := p.svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := p.status(t)
	if after.KeyId == before.KeyId || !strings.HasPrefix(after.KeyId, "kube/v2/") {
		t.Fatalf("key id after rotation %q (before %q)", after.KeyId, before.KeyId)
	}
	fresh := p.encrypt(t, "after rotation")
	if fresh.KeyId != after.KeyId || !strings.Contains(string(fresh.Ciphertext), ":vault:v2:") {
		t.Fatalf("encrypt after rotation: %q %q", fresh.KeyId, fresh.Ciphertext)
	}
	if p.decrypt(t, old) != "before rotation" || p.decrypt(t, fresh) != "after rotation" {
		t.Fatal("round trip across rotation failed")
	}
}

func TestRecreatedKeyNeverReusesKeyID(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	p := startPlugin(t, v, false, "kube")
	first := p.status(t).KeyId
	v.Write("transit/keys/kube/config", map[string]any{"deletion_allowed": true})
	if _, err := v.Client().Logical().Delete("transit/keys/kube"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // transit stamps versions in whole seconds
	v.Write("transit/keys/kube", nil)
	if err := p.svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := p.status(t).KeyId
	if !strings.HasPrefix(second, "kube/v1/") || second == first {
		t.Fatalf("recreated key: key id %q, before %q", second, first)
	}
}

func TestMovingBetweenKeys(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "old", "new")
	oldOnly := startPlugin(t, v, false, "old")
	written := oldOnly.encrypt(t, "under old")

	both := startPlugin(t, v, false, "new", "old")
	if got := both.decrypt(t, written); got != "under old" {
		t.Fatalf("decrypt old data with [new old]: %q", got)
	}
	res := both.encrypt(t, "under new")
	if !strings.HasPrefix(string(res.Ciphertext), "new:") || !strings.HasPrefix(res.KeyId, "new/") {
		t.Fatalf("new writes go to %q / %q", res.Ciphertext[:8], res.KeyId)
	}
	newOnly := startPlugin(t, v, false, "new")
	_, err := newOnly.v2.Decrypt(context.Background(), &kmsapi.DecryptRequest{Ciphertext: written.Ciphertext})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "VAULT_KMS_KEY_NAMES") {
		t.Fatalf("decrypt old data once old is dropped: %v", err)
	}
}

func TestVaultOutageAndRecovery(t *testing.T) {
	v := testvault.Start(t, testvault.Options{Persistent: true})
	v.EnableTransit("transit", "kube")
	p := startPlugin(t, v, false, "kube")
	written := p.encrypt(t, "survives the outage")

	v.Stop()
	_ = p.svc.Refresh(context.Background())
	if st, err := p.v2.Status(context.Background(), &kmsapi.StatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("status with Vault down: %+v, %v", st, err)
	}
	_, err := p.v2.Encrypt(context.Background(), &kmsapi.EncryptRequest{Plaintext: []byte("x")})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("encrypt with Vault down: %v", err)
	}

	v.Start() // same storage, unsealed again
	if err := p.svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p.status(t); st.Healthz != "ok" {
		t.Fatalf("status after recovery: %+v", st)
	}
	if got := p.decrypt(t, written); got != "survives the outage" {
		t.Fatalf("decrypt after recovery: %q", got)
	}
}

func TestSealedVaultIsUnavailable(t *testing.T) {
	v := testvault.Start(t, testvault.Options{Persistent: true})
	v.EnableTransit("transit", "kube")
	p := startPlugin(t, v, false, "kube")
	written := p.encrypt(t, "sealed")
	v.Seal()
	_, err := p.v2.Decrypt(context.Background(), &kmsapi.DecryptRequest{Ciphertext: written.Ciphertext})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("decrypt with Vault sealed: %v", err)
	}
	v.Unseal()
	if got := p.decrypt(t, written); got != "sealed" {
		t.Fatalf("after unseal: %q", got)
	}
}

// TestStatusStormCostsNoVaultRequests counts requests in Vault's own audit log.
func TestStatusStormCostsNoVaultRequests(t *testing.T) {
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	audit := filepath.Join(v.Dir, "audit.log")
	v.Write("sys/audit/file", map[string]any{"type": "file", "options": map[string]any{"file_path": audit}})
	p := startPlugin(t, v, false, "kube")
	p.status(t)
	before := countRequests(t, audit)
	for range 1000 {
		if st := p.status(t); st.Healthz != "ok" {
			t.Fatalf("status %+v", st)
		}
	}
	if n := countRequests(t, audit) - before; n != 0 {
		t.Fatalf("1000 Status calls caused %d Vault requests", n)
	}
	// The audit log does see real traffic.
	p.encrypt(t, "x")
	if countRequests(t, audit) == before {
		t.Fatal("audit log did not record an encrypt")
	}
}

func countRequests(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"type":"request"`) {
			n++
		}
	}
	return n
}
