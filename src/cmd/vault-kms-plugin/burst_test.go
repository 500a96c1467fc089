package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	v1beta1 "k8s.io/kms/apis/v1beta1"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// chartMemoryLimit is the chart's default resources.limits.memory (128Mi),
// and chartGOMEMLIMIT what the chart derives from it.
const (
	chartMemoryLimit = 128 << 20
	chartGOMEMLIMIT  = "128000000"
)

// buildPlain builds the plugin without the race detector, whose shadow
// memory would swamp a measurement of the plugin's own; once per run.
var buildPlain = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(pluginBin), "vault-kms-plugin-norace")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func plainPluginBin(t *testing.T) string {
	t.Helper()
	bin, err := buildPlain()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// peakRSS is VmHWM of pid, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// A burst of 5,000 concurrent calls, v2 and v1, Encrypt and Decrypt, at
// the real binary on a real Vault with the chart's GOMEMLIMIT: the plugin's
// peak RSS stays under the chart's memory limit, every call either succeeds
// with the right answer or is refused with ResourceExhausted, and none fails
// any other way. Without group commit each call is its own Vault request,
// the most memory a call holds: uncapped, this burst peaked at 153 MiB.
func TestBurstStaysUnderTheChartsMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		groupCommit string
		connsPerAPI int // an apiserver holds one per API; more stand for more callers
		refusals    bool
	}{
		{name: "group commit, one apiserver", groupCommit: "true", connsPerAPI: 1},
		{name: "no group commit, one apiserver", groupCommit: "false", connsPerAPI: 1},
		{name: "group commit, four callers per API", groupCommit: "true", connsPerAPI: 4, refusals: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			byCode, peak := burst(t, 5000, tc.connsPerAPI, map[string]string{"VAULT_KMS_GROUP_COMMIT": tc.groupCommit})
			for code, n := range byCode {
				if code != codes.OK && code != codes.ResourceExhausted {
					t.Errorf("%d calls failed with %v; only ResourceExhausted is documented", n, code)
				}
			}
			if byCode[codes.OK] == 0 {
				t.Error("no call succeeded")
			}
			if !tc.refusals && byCode[codes.ResourceExhausted] > 0 {
				t.Errorf("%d calls of one apiserver refused; its connections' stream limit should have queued them", byCode[codes.ResourceExhausted])
			}
			if peak >= chartMemoryLimit {
				t.Errorf("peak RSS %d bytes reaches the chart's memory limit of %d", peak, chartMemoryLimit)
			}
		})
	}
}

// burst starts Vault and the plugin (built without the race detector, with
// the chart's GOMEMLIMIT and extra settings), fires calls at once over
// connsPerAPI connections for each API, checks every answer, and returns
// the calls' codes and the plugin's peak RSS.
func burst(t *testing.T, calls, connsPerAPI int, extra map[string]string) (map[codes.Code]int, int64) {
	t.Helper()
	v := testvault.Start(t, testvault.Options{})
	v.EnableTransit("transit", "kube")
	sock := filepath.Join(t.TempDir(), "kms.sock")
	env := pluginEnv(v, sock, map[string]string{"GOMEMLIMIT": chartGOMEMLIMIT, "VAULT_KMS_LOG_LEVEL": "error"})
	for k, val := range extra {
		env[k] = val
	}
	p := startPluginBin(t, plainPluginBin(t), env)
	waitHealthy(t, sock)

	// Generous: it only ends a test that would otherwise hang.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dek := bytes.Repeat([]byte{7}, 32)
	var kinds []func() ([]byte, error)
	for range connsPerAPI {
		kinds = append(kinds, burstCalls(ctx, t, kmsapi.NewKeyManagementServiceClient(dialConn(t, sock)),
			v1beta1.NewKeyManagementServiceClient(dialConn(t, sock)), dek)...)
	}
	before := peakRSS(t, p.cmd.Process.Pid)

	start := make(chan struct{})
	var mu sync.Mutex
	byCode := map[codes.Code]int{}
	var wrong int
	var wg sync.WaitGroup
	for i := range calls {
		call := kinds[i%len(kinds)]
		wg.Go(func() {
			<-start
			out, err := call()
			mu.Lock()
			defer mu.Unlock()
			byCode[grpcstatus.Code(err)]++
			if err == nil && !bytes.Equal(out, dek) {
				wrong++
			}
		})
	}
	close(start)
	wg.Wait()

	peak := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("%d concurrent calls over %d connections: %v by code; peak RSS %.1f MiB (%.1f MiB before the burst), limit %d MiB",
		calls, 2*connsPerAPI, byCode, float64(peak)/(1<<20), float64(before)/(1<<20), chartMemoryLimit>>20)
	if wrong > 0 {
		t.Errorf("%d calls answered with the wrong plaintext or ciphertext", wrong)
	}
	return byCode, peak
}

// burstCalls returns a v2 Encrypt, v2 Decrypt, v1 Encrypt and v1 Decrypt of
// dek; each returns dek when its answer is right.
func burstCalls(ctx context.Context, t *testing.T, v2 kmsapi.KeyManagementServiceClient, v1 v1beta1.KeyManagementServiceClient, dek []byte) []func() ([]byte, error) {
	t.Helper()
	v2ct, err := v2.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "prep", Plaintext: dek})
	if err != nil {
		t.Fatal(err)
	}
	v1ct, err := v1.Encrypt(ctx, &v1beta1.EncryptRequest{Version: "v1beta1", Plain: dek})
	if err != nil {
		t.Fatal(err)
	}
	// An Encrypt's answer is right when it is a ciphertext of the key.
	encrypted := func(ct []byte) []byte {
		if bytes.HasPrefix(ct, []byte("kube:vault:v1:")) {
			return dek
		}
		return ct
	}
	return []func() ([]byte, error){
		func() ([]byte, error) {
			res, err := v2.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "burst", Plaintext: dek})
			return encrypted(res.GetCiphertext()), err
		},
		func() ([]byte, error) {
			res, err := v2.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "burst", Ciphertext: v2ct.Ciphertext, KeyId: v2ct.KeyId})
			return res.GetPlaintext(), err
		},
		func() ([]byte, error) {
			res, err := v1.Encrypt(ctx, &v1beta1.EncryptRequest{Version: "v1beta1", Plain: dek})
			return encrypted(res.GetCipher()), err
		},
		func() ([]byte, error) {
			res, err := v1.Decrypt(ctx, &v1beta1.DecryptRequest{Version: "v1beta1", Cipher: v1ct.Cipher})
			return res.GetPlain(), err
		},
	}
}

func dialConn(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
