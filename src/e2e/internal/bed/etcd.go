package bed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// StartEtcd starts etcd on two free ports and waits for /health. It stops
// when the bed's owner ends.
func (b *Bed) StartEtcd(t testvault.TB) {
	t.Helper()
	b.EtcdPort = testvault.FreePort(t)
	peer := testvault.FreePort(t)
	client := fmt.Sprintf("http://127.0.0.1:%d", b.EtcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	args := []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(b.Dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync",
		"--log-level=warn",
	}
	p := StartProc(t, "etcd", filepath.Join(b.LogDir, "etcd.log"), b.Dir, b.EtcdBin, args, nil)
	b.Etcd = p
	b.Owner.Cleanup(func() { p.Stop(syscall.SIGTERM, 10*time.Second) })
	WaitFor(t, 60*time.Second, "etcd /health", func() error {
		if !p.Running() {
			t.Fatal(exited(p, 20))
		}
		resp, err := http.Get(client + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// KV is a key and its value as etcd holds them.
type KV struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

// EtcdRange reads keys straight from etcd through its v3 JSON gateway:
// key alone, or [key, rangeEnd).
func (b *Bed) EtcdRange(t testvault.TB, key, rangeEnd string) []KV {
	t.Helper()
	req := map[string]any{"key": []byte(key)}
	if rangeEnd != "" {
		req["range_end"] = []byte(rangeEnd)
	}
	body, err := json.Marshal(req)
	must(t, err)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v3/kv/range", b.EtcdPort), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("etcd range %s: %v", key, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("etcd range %s: %s %v: %s", key, resp.Status, err, raw)
	}
	var out struct {
		KVs []KV `json:"kvs"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("etcd range %s: %v: %s", key, err, raw)
	}
	return out.KVs
}

// EtcdGet is the raw value etcd holds for a Secret.
func (b *Bed) EtcdGet(t testvault.TB, ns, name string) []byte {
	t.Helper()
	return b.EtcdGetPrefix(t, "/registry", ns, name)
}

// EtcdGetPrefix is EtcdGet for an apiserver with another --etcd-prefix.
func (b *Bed) EtcdGetPrefix(t testvault.TB, prefix, ns, name string) []byte {
	t.Helper()
	key := prefix + "/secrets/" + ns + "/" + name
	kvs := b.EtcdRange(t, key, "")
	if len(kvs) != 1 {
		t.Fatalf("etcd has %d values at %s, want 1", len(kvs), key)
	}
	return kvs[0].Value
}

// EtcdSecrets is every value in etcd under prefix (e.g. /registry/secrets/).
func (b *Bed) EtcdSecrets(t testvault.TB, prefix string) []KV {
	t.Helper()
	// The range end of a prefix: the prefix with its last byte incremented.
	end := []byte(prefix)
	end[len(end)-1]++
	return b.EtcdRange(t, prefix, string(end))
}
